package httpapi

import (
	"net/http"

	"seckill"
)

func (s *Server) listOrders(w http.ResponseWriter, r *http.Request, sess *seckill.Session) error {
	orders, err := s.cfg.Orders.OrdersByUser(r.Context(), sess.UserID)
	if err != nil {
		return err
	}
	if orders == nil {
		orders = []*seckill.Order{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"orders": orders})
	return nil
}

func (s *Server) getOrder(w http.ResponseWriter, r *http.Request, sess *seckill.Session) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	o, err := s.cfg.Orders.Order(r.Context(), id)
	if err != nil {
		return err
	}
	if o.UserID != sess.UserID {
		// Someone else's order is indistinguishable from none.
		return seckill.Errorf(seckill.ENotFound, "no such order")
	}
	writeJSON(w, http.StatusOK, map[string]any{"order": o})
	return nil
}
