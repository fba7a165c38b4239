package captcha

// glyphW and glyphH are the size of a glyph in font cells.
const (
	glyphW = 5
	glyphH = 7
)

// glyph is one character of the bitmap font: bit (glyphW-1-x) of row y is
// set when cell (x, y) is ink.
type glyph [glyphH]uint8

// font maps every character a question can contain (apart from the space,
// which only advances) to its bitmap. The shapes are plain and open on
// purpose: a person must read them through the noise at a glance.
var font = map[rune]glyph{
	'0': parseGlyph(
		".###.",
		"#...#",
		"#...#",
		"#...#",
		"#...#",
		"#...#",
		".###.",
	),
	'1': parseGlyph(
		"..#..",
		".##..",
		"#.#..",
		"..#..",
		"..#..",
		"..#..",
		"#####",
	),
	'2': parseGlyph(
		".###.",
		"#...#",
		"....#",
		"...#.",
		"..#..",
		".#...",
		"#####",
	),
	'3': parseGlyph(
		"#####",
		"...#.",
		"..#..",
		"...#.",
		"....#",
		"#...#",
		".###.",
	),
	'4': parseGlyph(
		"...#.",
		"..##.",
		".#.#.",
		"#..#.",
		"#####",
		"...#.",
		"...#.",
	),
	'5': parseGlyph(
		"#####",
		"#....",
		"####.",
		"....#",
		"....#",
		"#...#",
		".###.",
	),
	'6': parseGlyph(
		"..##.",
		".#...",
		"#....",
		"####.",
		"#...#",
		"#...#",
		".###.",
	),
	'7': parseGlyph(
		"#####",
		"....#",
		"...#.",
		"..#..",
		".#...",
		".#...",
		".#...",
	),
	'8': parseGlyph(
		".###.",
		"#...#",
		"#...#",
		".###.",
		"#...#",
		"#...#",
		".###.",
	),
	'9': parseGlyph(
		".###.",
		"#...#",
		"#...#",
		".####",
		"....#",
		"...#.",
		".##..",
	),
	'+': parseGlyph(
		".....",
		"..#..",
		"..#..",
		"#####",
		"..#..",
		"..#..",
		".....",
	),
	'-': parseGlyph(
		".....",
		".....",
		".....",
		"#####",
		".....",
		".....",
		".....",
	),
	'×': parseGlyph(
		".....",
		"#...#",
		".#.#.",
		"..#..",
		".#.#.",
		"#...#",
		".....",
	),
	'=': parseGlyph(
		".....",
		".....",
		"#####",
		".....",
		"#####",
		".....",
		".....",
	),
	'?': parseGlyph(
		".###.",
		"#...#",
		"....#",
		"...#.",
		"..#..",
		".....",
		"..#..",
	),
}

// parseGlyph turns glyphH rows of glyphW characters ('#' ink, anything else
// paper) into a glyph. It panics on a malformed picture: the font is a
// compile-time constant, so that is a programming error.
func parseGlyph(rows ...string) glyph {
	if len(rows) != glyphH {
		panic("captcha: glyph needs 7 rows")
	}
	var g glyph
	for y, row := range rows {
		if len(row) != glyphW {
			panic("captcha: glyph row needs 5 cells: " + row)
		}
		for x := 0; x < glyphW; x++ {
			if row[x] == '#' {
				g[y] |= 1 << (glyphW - 1 - x)
			}
		}
	}
	return g
}

// ink reports whether cell (x, y) of g is ink; cells outside the glyph are not.
func (g glyph) ink(x, y int) bool {
	if x < 0 || x >= glyphW || y < 0 || y >= glyphH {
		return false
	}
	return g[y]&(1<<(glyphW-1-x)) != 0
}

// Masks are the glyphs pre-rendered as smooth strokes, sub cells per font cell
// each way, so drawing samples a table instead of doing geometry per pixel.
const (
	sub   = 8
	maskW = glyphW * sub
	maskH = glyphH * sub
)

// mask is a glyph rendered as strokes: true where there is ink.
type mask [maskH][maskW]bool

// at reports whether font-space point (u, v) (in cells) is ink.
func (m *mask) at(u, v float64) bool {
	x, y := int(u*sub), int(v*sub)
	if u < 0 || v < 0 || x >= maskW || y >= maskH {
		return false
	}
	return m[y][x]
}

// masks holds the stroke mask of every glyph in font.
var masks = func() map[rune]*mask {
	m := make(map[rune]*mask, len(font))
	for r, g := range font {
		m[r] = g.strokes(0.58)
	}
	return m
}()

// strokes turns the bitmap into pen strokes of the given half-width (in
// cells): every ink cell is a dot, joined to its ink neighbours across and
// down, and diagonally when no orthogonal path already joins them. A plain
// scaled bitmap shows diagonals as loose squares; strokes keep them whole.
func (g glyph) strokes(r float64) *mask {
	type seg struct{ ax, ay, bx, by float64 }
	var segs []seg
	for y := range glyphH {
		for x := range glyphW {
			if !g.ink(x, y) {
				continue
			}
			cx, cy := float64(x)+0.5, float64(y)+0.5
			segs = append(segs, seg{cx, cy, cx, cy})
			if g.ink(x+1, y) {
				segs = append(segs, seg{cx, cy, cx + 1, cy})
			}
			if g.ink(x, y+1) {
				segs = append(segs, seg{cx, cy, cx, cy + 1})
			}
			for _, dx := range []int{-1, 1} {
				if g.ink(x+dx, y+1) && !g.ink(x+dx, y) && !g.ink(x, y+1) {
					segs = append(segs, seg{cx, cy, cx + float64(dx), cy + 1})
				}
			}
		}
	}
	var m mask
	for my := range maskH {
		for mx := range maskW {
			px, py := (float64(mx)+0.5)/sub, (float64(my)+0.5)/sub
			for _, s := range segs {
				if distSq(px, py, s.ax, s.ay, s.bx, s.by) <= r*r {
					m[my][mx] = true
					break
				}
			}
		}
	}
	return &m
}

// distSq is the squared distance from (px, py) to the segment a–b.
func distSq(px, py, ax, ay, bx, by float64) float64 {
	dx, dy := bx-ax, by-ay
	t := 0.0
	if l := dx*dx + dy*dy; l > 0 {
		t = max(0, min(1, ((px-ax)*dx+(py-ay)*dy)/l))
	}
	ex, ey := ax+t*dx-px, ay+t*dy-py
	return ex*ex + ey*ey
}
