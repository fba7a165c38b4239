package httpapi

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
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
	// The answer is encoded and written a sale at a time, as writeJSON
	// would write it whole: a catalogue of many sales encoded into one
	// buffer pinned megabytes per client reading it slowly (up to the
	// write timeout). Here a client that stops reading holds the writer's
	// buffer and one sale's view and encoding; each view is made as its
	// turn comes (a view is a copy of the sale).
	now, err := json.Marshal(s.cfg.Engine.SaleTime().UTC())
	if err != nil {
		return fmt.Errorf("encode the server time: %w", err)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 4<<10)
	bw.WriteString(`{"sales":[`)
	for i, sale := range sales {
		b, err := json.Marshal(s.publicView(r.Context(), sale))
		if err != nil {
			// The status is out: cut the answer off rather than end it
			// as valid JSON missing a sale.
			s.log.Error("encode a sale of the catalogue", "sale", sale.ID, "err", err)
			panic(http.ErrAbortHandler)
		}
		if i > 0 {
			bw.WriteByte(',')
		}
		bw.Write(b)
	}
	bw.WriteString(`],"server_time":`)
	bw.Write(now)
	bw.WriteString("}\n")
	_ = bw.Flush()
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
