package httpapi

import (
	"net/http"

	"seckill"
)

func (s *Server) createSale(w http.ResponseWriter, r *http.Request, _ *seckill.Session) error {
	sale, err := parseCreateSale(r.Body)
	if err != nil {
		return err
	}
	if err := s.cfg.Engine.CreateSale(r.Context(), sale); err != nil {
		return err
	}
	s.catalog.invalidate()
	writeJSON(w, http.StatusCreated, map[string]any{"sale": s.view(r.Context(), sale), "server_time": s.cfg.Engine.SaleTime().UTC()})
	return nil
}

func (s *Server) saleStats(w http.ResponseWriter, r *http.Request, _ *seckill.Session) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	st, err := s.cfg.Engine.Stats(r.Context(), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}

// stopSale is POST /api/admin/sales/{id}/stop: the sale ends now (an
// upcoming one never opens) and the answer is the sale as it now stands,
// 200 {"sale":{…},"server_time":…}; 404 if there is no such sale.
func (s *Server) stopSale(w http.ResponseWriter, r *http.Request, _ *seckill.Session) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	sale, err := s.cfg.Engine.StopSale(r.Context(), id)
	if err != nil {
		return err
	}
	s.catalog.invalidate()
	writeJSON(w, http.StatusOK, map[string]any{"sale": s.view(r.Context(), sale), "server_time": s.cfg.Engine.SaleTime().UTC()})
	return nil
}

// refundOrder is POST /api/admin/orders/{id}/refund: the paid order is
// refunded (its unit goes back on sale, its money back to the buyer
// through the provider, retried until the provider takes it); 200
// {"order":{…}} as it now stands, 404 if there is no such order, 409
// not_cancellable if it is not paid (also when a racing refund won).
func (s *Server) refundOrder(w http.ResponseWriter, r *http.Request, _ *seckill.Session) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	o, err := s.cfg.Engine.Refund(r.Context(), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"order": o})
	return nil
}
