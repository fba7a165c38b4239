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
	if err := s.allow(r.Context(), s.cfg.IPLimit, s.clientIP(r)); err != nil {
		return err
	}
	ticket, err := s.cfg.Engine.Admit(r.Context(), a)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"status": seckill.ResultQueued, "ticket": ticket})
	return nil
}

func (s *Server) result(w http.ResponseWriter, r *http.Request, sess *seckill.Session) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	res, err := s.cfg.Engine.Result(r.Context(), sess.UserID, id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}
