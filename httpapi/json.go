package httpapi

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"

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
	noteCode(w, code)
	if code == seckill.EInternal {
		log.Error("internal error", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	status := StatusOf(code)
	if (status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests) && w.Header().Get("Retry-After") == "" {
		w.Header().Set("Retry-After", "1") // unless the handler knows better
	}
	var body errorBody
	body.Error.Code, body.Error.Message = code, seckill.ErrorMessage(err)
	writeJSON(w, status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// decode reads one JSON value of type T from body: at most MaxBody bytes
// (ETooLarge beyond), no unknown fields, no wrong types, nothing after the
// value (EInvalid). An empty body is EInvalid unless allowEmpty.
//
// It is the one request-body decoder, and the one place of the size limit:
// every handler hands r.Body to a parse function of requests.go, which
// calls it. It reads at most MaxBody+1 bytes; what is left of a larger body
// net/http drains or, past its own drain limit, closes the connection on.
func decode[T any](body io.Reader, allowEmpty bool) (T, error) {
	var v T
	lr := &io.LimitedReader{R: body, N: MaxBody + 1}
	dec := json.NewDecoder(lr)
	dec.DisallowUnknownFields()
	err := dec.Decode(&v)
	if lr.N <= 0 {
		return v, seckill.Errorf(seckill.ETooLarge, "request body is over %d bytes", MaxBody)
	}
	switch {
	case errors.Is(err, io.EOF):
		if allowEmpty {
			return v, nil
		}
		return v, seckill.Errorf(seckill.EInvalid, "request body is empty; send a JSON object")
	case err != nil:
		return v, seckill.Errorf(seckill.EInvalid, "bad JSON: %s", jsonProblem(err))
	}
	_, err = dec.Token()
	if lr.N <= 0 {
		// The limited reader ends in EOF: the body went on past MaxBody.
		return v, seckill.Errorf(seckill.ETooLarge, "request body is over %d bytes", MaxBody)
	}
	if !errors.Is(err, io.EOF) {
		return v, seckill.Errorf(seckill.EInvalid, "bad JSON: more than one value in the body")
	}
	return v, nil
}

// jsonProblem describes a decoding error without echoing large input.
func jsonProblem(err error) string {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		return "field " + strconv.Quote(te.Field) + " must be " + te.Type.String()
	case errors.As(err, &se):
		return "syntax error at byte " + strconv.FormatInt(se.Offset, 10)
	}
	msg := err.Error()
	if len(msg) > 200 {
		msg = msg[:200]
	}
	return msg
}
