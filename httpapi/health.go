package httpapi

import (
	"context"
	"net/http"
	"time"

	"seckill"
)

// Health serves the health checks for the operations listener: GET
// /healthz (the process is up) and GET /readyz (every backend answers and
// the stock gate is loaded; 503 busy otherwise). The API's own listener
// does not serve them: the contract keeps operations off the public one.
func (s *Server) Health() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := s.readyz(w, r); err != nil {
			writeError(w, r, s.log, err)
		}
	})
	return mux
}

// readyTimeout bounds the backends' answers to /readyz: one that takes
// longer (a NATS leader election, a Redis failover) cannot take a
// purchase either, and a probe is better told so than left waiting (a
// review saw every instance's /readyz take 2–5 s through each election).
const readyTimeout = 2 * time.Second

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) error {
	if s.cfg.Ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		defer cancel()
		if err := s.cfg.Ready(ctx); err != nil {
			s.log.Warn("not ready", "err", err)
			return seckill.Errorf(seckill.EBusy, "not ready: %v", seckill.ErrorMessage(err))
		}
	}
	if !s.cfg.Engine.Ready() {
		return seckill.Errorf(seckill.EBusy, "not ready: stock gate is loading")
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	return nil
}
