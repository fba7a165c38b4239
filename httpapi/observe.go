package httpapi

import (
	"net/http"
	"sync"
	"time"
)

// recorder remembers the status and error code of an answer for
// Config.Observe. Recorders are pooled: observing costs no allocation.
type recorder struct {
	http.ResponseWriter
	status int
	code   string
}

var recorders = sync.Pool{New: func() any { return new(recorder) }}

func (w *recorder) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *recorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (flush, hijack).
func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// noteCode records the application error code answered on w, when w is
// observed.
func noteCode(w http.ResponseWriter, code string) {
	if rec, ok := w.(*recorder); ok {
		rec.code = code
	}
}

// observed serves r and tells Config.Observe about it. The route is the
// ServeMux pattern that matched, which ServeMux sets on r.
func (s *Server) observed(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := recorders.Get().(*recorder)
	*rec = recorder{ResponseWriter: w}
	s.mux.ServeHTTP(rec, r)
	status := rec.status
	if status == 0 {
		status = http.StatusOK
	}
	s.cfg.Observe(r.Pattern, rec.code, status, time.Since(start))
	*rec = recorder{}
	recorders.Put(rec)
}
