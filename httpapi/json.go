package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"seckill"
)

// MaxBody is the largest request body accepted.
const MaxBody = 64 << 10

// statusOf maps every application error code to its HTTP status: the one
// place the contract's table lives.
var statusOf = map[string]int{
	seckill.EInvalid:         http.StatusBadRequest,
	seckill.ETooLarge:        http.StatusRequestEntityTooLarge,
	seckill.EUnauthenticated: http.StatusUnauthorized,
	seckill.EForbidden:       http.StatusForbidden,
	seckill.ENotFound:        http.StatusNotFound,
	seckill.EMethod:          http.StatusMethodNotAllowed,
	seckill.EPhoneTaken:      http.StatusConflict,
	seckill.EBadCredentials:  http.StatusUnauthorized,
	seckill.EBadCaptcha:      http.StatusBadRequest,
	seckill.ENotStarted:      http.StatusForbidden,
	seckill.EEnded:           http.StatusForbidden,
	seckill.EBadPath:         http.StatusForbidden,
	seckill.EDuplicate:       http.StatusConflict,
	seckill.ESoldOut:         http.StatusGone,
	seckill.ERateLimited:     http.StatusTooManyRequests,
	seckill.EBusy:            http.StatusServiceUnavailable,
	seckill.EInternal:        http.StatusInternalServerError,
	seckill.ENotPayable:      http.StatusConflict,
	seckill.ENotCancellable:  http.StatusConflict,
	seckill.EBadSignature:    http.StatusBadRequest,
	seckill.EAmountMismatch:  http.StatusBadRequest,
	seckill.EExpired:         http.StatusGone,
}

// StatusOf returns the HTTP status of an application error code.
func StatusOf(code string) int {
	if s, ok := statusOf[code]; ok {
		return s
	}
	return http.StatusInternalServerError
}

type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// writeError answers err as the contract's error body. Internal errors are
// logged and answered without details.
func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	code := seckill.ErrorCode(err)
	if code == seckill.EInternal && r.Context().Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		// The client went away while a backend call ran, which its
		// request's end cut: no internal error (found by review: logins
		// abandoned after 20 ms logged and counted as 500s), but what was
		// cut is logged, since a backend that hangs shows only so when
		// its clients give up first (found by review of that fix: a hung
		// payment provider left no trace). Counted as nginx's 499, a
		// client closed request, which nobody reads.
		log.Warn("request ended before its answer: the client went away", "method", r.Method, "path", r.URL.Path, "err", err)
		noteCode(w, seckill.EBusy)
		w.WriteHeader(StatusClientClosed)
		return
	}
	noteCode(w, code)
	if code == seckill.EInternal {
		log.Error("internal error", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	status := StatusOf(code)
	if (status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests) && w.Header().Get("Retry-After") == "" {
		// Unless the handler or the error knows better.
		retry := "1"
		if d := seckill.RetryAfter(err); d > time.Second {
			retry = strconv.Itoa(int((d + time.Second - 1) / time.Second))
		}
		w.Header().Set("Retry-After", retry)
	}
	msg := seckill.ErrorMessage(err)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(errorBodies.body(code, msg))
}

// StatusClientClosed is the status of a request whose client went away
// before its answer (nginx's 499): it is written for the metrics only.
const StatusClientClosed = 499

// errorBodies keeps the encoded error bodies: a crowd's refusals are a few
// codes and messages answered hundreds of thousands of times, and encoding
// each anew was a sixth of a 409's cost on the server.
var errorBodies = &bodyCache{m: map[[2]string][]byte{}}

// maxCachedBodies bounds bodyCache: messages that name an id (no order
// 42) are many; past the bound a body is encoded for every answer.
const maxCachedBodies = 256

// bodyCache maps an error's code and message to its encoded body.
type bodyCache struct {
	mu sync.RWMutex
	m  map[[2]string][]byte
}

// body returns the encoded errorBody of code and msg. The slice is shared:
// callers only write it out.
func (c *bodyCache) body(code, msg string) []byte {
	key := [2]string{code, msg}
	c.mu.RLock()
	b, ok := c.m[key]
	c.mu.RUnlock()
	if ok {
		return b
	}
	var body errorBody
	body.Error.Code, body.Error.Message = code, msg
	var buf bytes.Buffer
	_ = json.NewEncoder(&buf).Encode(body)
	b = buf.Bytes()
	c.mu.Lock()
	if len(c.m) < maxCachedBodies {
		c.m[key] = b
	}
	c.mu.Unlock()
	return b
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	// Encoded before the status is written: a value that cannot be
	// encoded (a time past year 9999) is a 500 that says so in the log,
	// not a 200 with an empty body.
	b, err := json.Marshal(v)
	if err != nil {
		slog.Error("encode a JSON answer", "status", status, "err", err)
		status, b = http.StatusInternalServerError, []byte(`{"error":{"code":"internal","message":"internal error"}}`)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// decode reads one JSON value of type T from body: at most MaxBody bytes
// (ETooLarge beyond), no unknown fields, no wrong types, no key twice in an
// object and no key that matches a field only when case is ignored (Go's
// decoder takes {"PHONE":…} for "phone" and keeps the last of two
// duplicates: a body must not mean one thing to us and another to a proxy
// or a validator in front), nothing after the value (EInvalid). An empty
// body is EInvalid unless allowEmpty.
//
// It is the one request-body decoder, and the one place of the size limit:
// every handler hands r.Body to a parse function of requests.go, which
// calls it. It reads at most MaxBody+1 bytes; what is left of a larger body
// net/http drains or, past its own drain limit, closes the connection on.
// The Content-Type is checked before, by jsonBody (csrf.go).
func decode[T any](body io.Reader, allowEmpty bool) (T, error) {
	var v T
	raw, err := io.ReadAll(io.LimitReader(body, MaxBody+1))
	if len(raw) > MaxBody {
		return v, seckill.Errorf(seckill.ETooLarge, "request body is over %d bytes", MaxBody)
	}
	if err != nil {
		return v, seckill.Errorf(seckill.EInvalid, "request body could not be read")
	}
	if !utf8.Valid(raw) {
		// encoding/json would replace each bad byte with U+FFFD: two
		// different passwords would become one, and a name would be
		// stored other than sent (found by review).
		return v, seckill.Errorf(seckill.EInvalid, "request body is not valid UTF-8")
	}
	if loneSurrogate(raw) {
		// Decoded, as U+FFFD: the same merge by another road (found by
		// review: "secret\ud800" and "secret\udc01" were one password).
		return v, seckill.Errorf(seckill.EInvalid, "request body has a \\u escape of half a UTF-16 surrogate pair")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	err = dec.Decode(&v)
	switch {
	case errors.Is(err, io.EOF):
		if allowEmpty {
			return v, nil
		}
		return v, seckill.Errorf(seckill.EInvalid, "request body is empty; send a JSON object")
	case err != nil:
		return v, seckill.Errorf(seckill.EInvalid, "bad JSON: %s", jsonProblem(err))
	}
	if _, err = dec.Token(); !errors.Is(err, io.EOF) {
		return v, seckill.Errorf(seckill.EInvalid, "bad JSON: more than one value in the body")
	}
	if err := checkKeys(raw, fieldNames[T]()); err != nil {
		return v, err
	}
	return v, nil
}

// loneSurrogate reports whether the JSON text raw holds a \u escape of a
// UTF-16 surrogate (D800–DFFF) that is not half of a high-then-low pair,
// which encoding/json would decode as U+FFFD. A backslash is only ever
// inside a string in JSON, so raw is scanned without parsing it; a
// malformed escape is the decoder's to report.
func loneSurrogate(raw []byte) bool {
	hex4 := func(i int) (rune, bool) {
		if i+4 > len(raw) {
			return 0, false
		}
		n, err := strconv.ParseUint(string(raw[i:i+4]), 16, 16)
		return rune(n), err == nil
	}
	for i := 0; i < len(raw); i++ {
		if raw[i] != '\\' || i+1 >= len(raw) {
			continue
		}
		if raw[i+1] != 'u' {
			i++ // an escaped character, \\ included
			continue
		}
		r, ok := hex4(i + 2)
		if !ok {
			continue
		}
		i += 5 // at the escape's last digit
		switch {
		case r >= 0xDC00 && r <= 0xDFFF:
			return true // a low half with no high before it
		case r >= 0xD800 && r <= 0xDBFF:
			if i+2 < len(raw) && raw[i+1] == '\\' && raw[i+2] == 'u' {
				if lo, ok := hex4(i + 3); ok && lo >= 0xDC00 && lo <= 0xDFFF {
					i += 6
					continue
				}
			}
			return true
		}
	}
	return false
}

// fieldNames returns the JSON names of T's fields when T is a struct (nil
// otherwise): the only spellings decode accepts at the top level.
func fieldNames[T any]() map[string]bool {
	t := reflect.TypeFor[T]()
	if t.Kind() != reflect.Struct {
		return nil
	}
	names := map[string]bool{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		names[name] = true
	}
	return names
}

// checkKeys walks raw, one JSON value that decoded already, and refuses
// (EInvalid) an object holding a key twice, and a top-level key that is
// not spelt exactly as one of names (when names is not nil).
func checkKeys(raw []byte, names map[string]bool) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	type frame struct {
		keys   map[string]bool // nil for an array
		expect bool            // the next token of an object is a key
	}
	var stack []frame
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil // EOF: the value decoded already, so it is well formed
		}
		if n := len(stack); n > 0 && stack[n-1].keys != nil && stack[n-1].expect {
			if d, ok := tok.(json.Delim); ok && d == '}' {
				stack = stack[:n-1]
				if n > 1 && stack[n-2].keys != nil {
					stack[n-2].expect = true
				}
				continue
			}
			key := tok.(string)
			if stack[n-1].keys[key] {
				return seckill.Errorf(seckill.EInvalid, "bad JSON: key %s appears twice", quoteShort(key))
			}
			if n == 1 && names != nil && !names[key] {
				return seckill.Errorf(seckill.EInvalid, "bad JSON: unknown field %s", quoteShort(key))
			}
			stack[n-1].keys[key] = true
			stack[n-1].expect = false
			continue
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, frame{keys: map[string]bool{}, expect: true})
			continue
		case json.Delim('['):
			stack = append(stack, frame{})
			continue
		case json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
		// A value ended: an enclosing object expects a key next.
		if n := len(stack); n > 0 && stack[n-1].keys != nil {
			stack[n-1].expect = true
		}
	}
}

// jsonKind names what a value of Go type t is in JSON.
func jsonKind(t reflect.Type) string {
	if t == reflect.TypeFor[time.Time]() {
		return "an RFC 3339 time string"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer in range"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Pointer:
		return jsonKind(t.Elem())
	}
	return "an object"
}

// quoteShort quotes s, cut to 40 bytes: an error must not echo large input.
func quoteShort(s string) string {
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return strconv.Quote(s)
}

// jsonProblem describes a decoding error without echoing large input,
// in JSON's terms: not Go's type names, nor the layout of Go's time
// parser (found by review).
func jsonProblem(err error) string {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	var pe *time.ParseError
	switch {
	case errors.As(err, &te) && te.Field == "":
		return "the body must be " + jsonKind(te.Type)
	case errors.As(err, &te):
		return "field " + strconv.Quote(te.Field) + " must be " + jsonKind(te.Type)
	case errors.As(err, &se):
		return "syntax error at byte " + strconv.FormatInt(se.Offset, 10)
	case errors.As(err, &pe), strings.HasPrefix(err.Error(), "Time.UnmarshalJSON"):
		return "times must be RFC 3339 strings, as \"2026-12-02T10:00:00Z\""
	}
	msg := err.Error()
	if len(msg) > 200 {
		msg = msg[:200]
	}
	return msg
}
