package httpapi

import (
	"net/http"

	"seckill"
)

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
