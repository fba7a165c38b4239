package sqldb

import (
	"iter"
	"strings"
	"time"
)

// Chunking of the statements that carry many rows (multi-row VALUES) or
// many values (IN lists): how many rows go in one statement, the
// statement text's placeholders, and the parameters, row by row or one
// array per column.

// hotChunks is chunks for the hot statements that prepareHot prepared.
func (db *DB) hotChunks(n, perRow int) []int {
	if db.d.prepare && n > 0 {
		return chunkSizes(n, (db.d.maxParams-1)/perRow)
	}
	return db.chunks(n, perRow)
}

// chunks returns the row counts of the statements that carry n rows of
// perRow parameters each (plus, at most, one more parameter).
func (db *DB) chunks(n, perRow int) []int {
	limit := (db.d.maxParams - 1) / perRow
	switch {
	case n <= 0:
		return nil
	case db.d.arrays:
		return []int{n}
	}
	// Any row count will do: spread n evenly over as few statements as
	// the parameter limit allows.
	parts := (n + limit - 1) / limit
	sizes := make([]int, parts)
	for i := range sizes {
		sizes[i] = n / parts
		if i < n%parts {
			sizes[i]++
		}
	}
	return sizes
}

// maxChunk is the most rows one prepared hot statement carries.
const maxChunk = 512

// chunkSizes splits n rows into chunks of at most limit (and maxChunk)
// rows, each a power of two, largest first, so that statements built for a
// row count come in the few shapes prepareHot prepared.
func chunkSizes(n, limit int) []int {
	top := 1
	for top*2 <= min(limit, maxChunk) {
		top *= 2
	}
	var sizes []int
	for size := top; n > 0; size /= 2 {
		for n >= size {
			sizes = append(sizes, size)
			n -= size
		}
	}
	return sizes
}

// chunked yields consecutive pieces of s of the given sizes, which must add
// up to len(s).
func chunked[E any](s []E, sizes []int) iter.Seq[[]E] {
	return func(yield func([]E) bool) {
		for _, n := range sizes {
			if !yield(s[:n:n]) {
				return
			}
			s = s[n:]
		}
	}
}

// column is one column of the rows a bulk statement carries.
type column interface {
	at(i int) any // row i's value, for engines that bind rows of parameters
	all() any     // every row's value, for engines that bind arrays
}

// col is a column with a value per row.
type col[T any] []T

func (c col[T]) at(i int) any { return c[i] }
func (c col[T]) all() any     { return []T(c) }

// same is a column with one value for every row: one parameter per row, or
// a single scalar where the engine binds arrays.
type same struct{ v any }

func (c same) at(int) any { return c.v }
func (c same) all() any   { return c.v }

// bulkArgs returns the parameters of a bulk statement of n rows with these
// columns: row after row, or one array per column (dialect.arrays).
func (db *DB) bulkArgs(n int, cols ...column) []any {
	if db.d.arrays {
		args := make([]any, len(cols))
		for i, c := range cols {
			args[i] = c.all()
		}
		return args
	}
	args := make([]any, 0, n*len(cols))
	for i := range n {
		for _, c := range cols {
			args = append(args, c.at(i))
		}
	}
	return args
}

// times is a time column, as the engine stores times.
func (db *DB) times(ts []time.Time) column {
	if db.d.timeMS {
		c := make(col[int64], len(ts))
		for i, t := range ts {
			c[i] = ms(t)
		}
		return c
	}
	c := make(col[time.Time], len(ts))
	for i, t := range ts {
		c[i] = stamp(t)
	}
	return c
}

// inArgs returns the parameters of an IN list: one per value, or one array.
func (db *DB) inArgs(head []any, vals []int64) []any {
	if db.d.arrays {
		return append(head, vals)
	}
	args := make([]any, 0, len(head)+len(vals))
	args = append(args, head...)
	for _, v := range vals {
		args = append(args, v)
	}
	return args
}

// rows returns n copies of row separated by commas, for multi-row VALUES
// with ? placeholders.
func rows(n int, row string) string {
	var b strings.Builder
	b.Grow(n * (len(row) + 2))
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(row)
	}
	return b.String()
}

// params returns n ? placeholders separated by commas.
func params(n int) string {
	return rows(n, "?")
}
