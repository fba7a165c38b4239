package testenv

import "net/http"

// DiscardWriter is an http.ResponseWriter that keeps only the status,
// reused between requests (Reset) so that a benchmark counts the
// handler's allocations, not a recorder's.
type DiscardWriter struct {
	h      http.Header
	Status int
}

// NewDiscardWriter returns an empty DiscardWriter.
func NewDiscardWriter() *DiscardWriter { return &DiscardWriter{h: http.Header{}} }

func (w *DiscardWriter) Header() http.Header         { return w.h }
func (w *DiscardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *DiscardWriter) WriteHeader(status int)      { w.Status = status }

// Reset forgets the last answer's header and status.
func (w *DiscardWriter) Reset() {
	clear(w.h)
	w.Status = 0
}
