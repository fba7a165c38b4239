package httpapi

import (
	"context"
	"net/http"

	"seckill"
)

// saleJSON is a sale with its status.
type saleJSON struct {
	*seckill.Sale
	Status string `json:"status"`
}

func (s *Server) view(ctx context.Context, sale *seckill.Sale) saleJSON {
	v, status := s.cfg.Engine.SaleView(ctx, sale)
	return saleJSON{Sale: v, Status: status}
}

// publicView is view for the public catalogue, whose units left may be a
// fraction of a second old (checkout.Engine.PublicSaleView).
func (s *Server) publicView(ctx context.Context, sale *seckill.Sale) saleJSON {
	v, status := s.cfg.Engine.PublicSaleView(ctx, sale)
	return saleJSON{Sale: v, Status: status}
}

func (s *Server) listSales(w http.ResponseWriter, r *http.Request) error {
	sales, err := s.catalog.get(r.Context())
	if err != nil {
		return err
	}
	out := make([]saleJSON, len(sales))
	for i, sale := range sales {
		out[i] = s.publicView(r.Context(), sale)
	}
	writeJSON(w, http.StatusOK, map[string]any{"sales": out, "server_time": s.cfg.Engine.SaleTime().UTC()})
	return nil
}

func (s *Server) getSale(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	sale, err := s.cfg.Engine.Sale(r.Context(), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"sale": s.publicView(r.Context(), sale), "server_time": s.cfg.Engine.SaleTime().UTC()})
	return nil
}
