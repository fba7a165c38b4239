// Package redact hides the secrets of backend addresses (database, Redis
// and NATS URLs, MySQL DSNs) before they reach a log line or an error
// message. It errs on the side of hiding: text it cannot tell apart from a
// secret goes too.
package redact

import (
	"errors"
	"net/url"
	"regexp"
	"slices"
	"strings"
)

// Mask replaces every secret.
const Mask = "xxxxx"

// schemeStart finds where a URL of a comma-separated list begins.
var schemeStart = regexp.MustCompile(`,\s*[A-Za-z][A-Za-z0-9+.\-]*://`)

// secretParam matches the name of a query parameter that holds a secret.
var secretParam = regexp.MustCompile(`(?i)pass|pwd|token|secret|auth|cred|key`)

// namedUser are the schemes whose userinfo without a colon is a user
// name, not a secret (in NATS and Redis a lone userinfo is a token or a
// password); "" is a MySQL DSN, which has no scheme.
var namedUser = map[string]bool{"": true, "postgres": true, "postgresql": true, "mysql": true}

// URL returns s with its secrets replaced by Mask: the password of every
// "scheme://user:password@host" (the password may hold "@", ":" or ","),
// a userinfo without a colon ("nats://TOKEN@host") except where it is a
// user name (postgres, mysql), and the values of query parameters whose
// name speaks of a secret (password=, token=, sslkey=…). s may be one URL,
// a comma-separated list of them ("nats://a:1,nats://b:2") or of hosts
// ("redis://:pw@a:1,b:2"), or a MySQL DSN ("user:pass@tcp(h:3306)/db").
func URL(s string) string {
	var b strings.Builder
	for _, seg := range segments(s) {
		b.WriteString(redactOne(seg))
	}
	return b.String()
}

// segments cuts s before each ",scheme://" that starts another URL; the
// separators stay with the segment they end.
func segments(s string) []string {
	var out []string
	for {
		loc := schemeStart.FindStringIndex(s)
		if loc == nil {
			return append(out, s)
		}
		out = append(out, s[:loc[0]+1])
		s = s[loc[0]+1:]
	}
}

// secretRanges returns the byte ranges of seg (one URL or DSN) that hold
// secrets, read every way the text allows so that no reading hides a
// secret from another: the userinfo, ending at the last "@" of the
// segment (a password may hold "@", "/" or "?"; a rare "@" further on only
// hides more), and secret query parameters.
func secretRanges(seg string) [][2]int {
	var rs [][2]int
	start := 0
	if i := strings.Index(seg, "://"); i >= 0 {
		start = i + 3
	} else if strings.HasPrefix(seg, "sqlite:") || strings.HasPrefix(seg, "file:") {
		return nil // a path, whatever it holds
	}
	if at := strings.LastIndex(seg, "@"); at >= start {
		userinfo := seg[start:at]
		scheme, _, _ := strings.Cut(seg[:start], ":")
		// A user name holding "@" may as well be a token and "user:"
		// whatever follows "@": the whole userinfo goes then.
		// That holds for the schemes whose lone userinfo is a user name
		// too: with a colon after an "@" it is no plain user name.
		c := strings.IndexByte(userinfo, ':')
		switch {
		case c >= 0 && !strings.Contains(userinfo[:c], "@"):
			rs = append(rs, [2]int{start + c + 1, at})
		case c >= 0 || !namedUser[strings.ToLower(scheme)]:
			rs = append(rs, [2]int{start, at})
		}
	}
	// A parameter may start after any "?" or "&": a value may hold "?",
	// and which "?" starts the query depends on the userinfo's end. A
	// value runs to the next "&".
	for i := start; i < len(seg); i++ {
		if seg[i] != '?' && seg[i] != '&' {
			continue
		}
		p := seg[i+1:]
		if amp := strings.IndexByte(p, '&'); amp >= 0 {
			p = p[:amp]
		}
		if name, _, ok := strings.Cut(p, "="); ok && secretParam.MatchString(name) {
			rs = append(rs, [2]int{i + 1 + len(name) + 1, i + 1 + len(p)})
		}
	}
	return rs
}

func redactOne(seg string) string {
	rs := secretRanges(seg)
	if len(rs) == 0 {
		return seg
	}
	slices.SortFunc(rs, func(a, b [2]int) int { return a[0] - b[0] })
	var b strings.Builder
	last := 0
	for i := 0; i < len(rs); {
		lo, hi := rs[i][0], rs[i][1]
		// Ranges that overlap or touch go as one.
		for i++; i < len(rs) && rs[i][0] <= hi; i++ {
			hi = max(hi, rs[i][1])
		}
		b.WriteString(seg[last:lo])
		b.WriteString(Mask)
		last = hi
	}
	b.WriteString(seg[last:])
	return b.String()
}

// Secrets returns the secrets URL hides in s, as written and
// percent-decoded, longest first, so that an error message quoting one can
// be scrubbed.
func Secrets(s string) []string {
	var out []string
	add := func(v string) {
		if v == "" || v == Mask {
			return
		}
		out = append(out, v)
		if u, err := url.PathUnescape(v); err == nil && u != v && u != "" {
			out = append(out, u)
		}
		if u, err := url.QueryUnescape(v); err == nil && u != v && u != "" {
			out = append(out, u)
		}
	}
	for _, seg := range segments(s) {
		for _, r := range secretRanges(seg) {
			add(seg[r[0]:r[1]])
		}
	}
	// Longest first: a secret that holds a shorter one goes whole.
	slices.SortStableFunc(out, func(a, b string) int { return len(b) - len(a) })
	return out
}

// Error returns err with every secret of s in its message replaced by
// Mask (drivers quote their DSN in some errors), or err itself when its
// message shows none. The result keeps nothing of err's chain but the
// text: a scrubbed error is for reading, not for errors.Is.
func Error(err error, s string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	scrubbed := msg
	for _, v := range Secrets(s) {
		scrubbed = strings.ReplaceAll(scrubbed, v, Mask)
	}
	if scrubbed == msg {
		return err
	}
	return errors.New(scrubbed)
}
