package httpapi

import (
	"net/http"

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

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) error {
	if s.cfg.Ready != nil {
		if err := s.cfg.Ready(r.Context()); err != nil {
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
