package httpapi

import (
	"encoding/base64"
	"net/http"

	"seckill"
)

func (s *Server) captcha(w http.ResponseWriter, r *http.Request, sess *seckill.Session) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	cid, png, exp, err := s.cfg.Engine.Captcha(r.Context(), sess.UserID, id)
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]any{
		"captcha_id": cid,
		"image":      "data:image/png;base64," + base64.StdEncoding.EncodeToString(png),
		"expires_at": exp,
	})
	return nil
}

func (s *Server) path(w http.ResponseWriter, r *http.Request, sess *seckill.Session) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	req, err := parsePath(r.Body)
	if err != nil {
		return err
	}
	p, exp, err := s.cfg.Engine.IssuePath(r.Context(), sess.UserID, id, req.CaptchaID, req.Answer)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"path": p, "expires_at": exp})
	return nil
}

func (s *Server) purchase(w http.ResponseWriter, r *http.Request, sess *seckill.Session) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	// The local checks first: once a sale sells out, or a buyer won,
	// nearly every request is answered here without a round trip to a
	// shared limiter. The per-user limit is the engine's, per user and
	// sale, taken by the gate in the step that reserves
	// (checkout.Config.PurchaseLimit): UserLimit is not asked here.
	a, err := s.cfg.Engine.CheckPurchase(r.Context(), sess.UserID, id, r.PathValue("path"))
	if err != nil {
		return err
	}
	lim := s.cfg.PurchaseIPLimit
	if lim == nil {
		lim = s.cfg.IPLimit
	}
	if err := s.allow(r.Context(), lim, s.clientIP(r)); err != nil {
		return err
	}
	ticket, err := s.cfg.Engine.Admit(r.Context(), a)
	if err != nil {
		return err
	}
	writeQueued(w, ticket)
	return nil
}

// writeQueued answers 202 {"status":"queued","ticket":…}, the bytes
// writeJSON would write, without the encoder's reflection over a map for
// the common ticket (the engine's, [0-9A-Z]): that was a twentieth of an
// admission's server CPU in a profile of a crowd that every buyer won.
func writeQueued(w http.ResponseWriter, ticket string) {
	for i := 0; i < len(ticket); i++ {
		if c := ticket[i]; (c < '0' || c > '9') && (c < 'A' || c > 'Z') && (c < 'a' || c > 'z') {
			writeJSON(w, http.StatusAccepted, map[string]string{"status": seckill.ResultQueued, "ticket": ticket})
			return
		}
	}
	b := make([]byte, 0, len(queuedPrefix)+len(ticket)+3)
	b = append(b, queuedPrefix...)
	b = append(b, ticket...)
	b = append(b, "\"}\n"...)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(http.StatusAccepted)
	_, _ = w.Write(b)
}

const queuedPrefix = `{"status":"` + seckill.ResultQueued + `","ticket":"`

func (s *Server) result(w http.ResponseWriter, r *http.Request, sess *seckill.Session) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	res, err := s.cfg.Engine.Result(r.Context(), sess.UserID, id)
	if err != nil {
		return err
	}
	if res.Status == seckill.ResultNone && !s.cfg.Engine.Ready() {
		// Recovering after a restart: requests accepted before it may be
		// in the queue still, not in SQL (found by review: buyers whose
		// 202 was queued at a kill -9 read "none" for half a second).
		return seckill.Errorf(seckill.EBusy, "results are being recovered; retry shortly")
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}
