package httpapi

import (
	"net"
	"net/http"
	"strconv"
	"strings"

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
		return orderErr(err)
	}
	if o.UserID != sess.UserID {
		return noOrder()
	}
	writeJSON(w, http.StatusOK, map[string]any{"order": o})
	return nil
}

// noOrder is the answer for an order that does not exist and for someone
// else's, word for word whatever the id: walking the ids must not tell
// which exist.
func noOrder() error {
	return seckill.Errorf(seckill.ENotFound, "no such order")
}

// orderErr is err, or noOrder when err says not found (in whatever words
// the store or the engine chose).
func orderErr(err error) error {
	if seckill.ErrorCode(err) == seckill.ENotFound {
		return noOrder()
	}
	return err
}

// cancelOrder is POST /api/orders/{id}/cancel: the buyer gives the order
// up; 200 {"order":…}, 404 for someone else's, 409 not_cancellable.
func (s *Server) cancelOrder(w http.ResponseWriter, r *http.Request, sess *seckill.Session) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	o, err := s.cfg.Engine.Cancel(r.Context(), sess.UserID, id)
	if err != nil {
		return orderErr(err)
	}
	writeJSON(w, http.StatusOK, map[string]any{"order": o})
	return nil
}

// payOrder is POST /api/orders/{id}/pay: 200 {"payment_id","pay_url"},
// the provider's page to send the buyer to; 404 for someone else's order,
// 409 not_payable when it is not pending or past its deadline.
func (s *Server) payOrder(w http.ResponseWriter, r *http.Request, sess *seckill.Session) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	p, err := s.cfg.Engine.Pay(r.Context(), sess.UserID, id, s.notifyBase(r)+"/api/payments/notify", s.publicBase(r)+"/")
	if err != nil {
		return orderErr(err)
	}
	writeJSON(w, http.StatusOK, map[string]string{"payment_id": p.ID, "pay_url": p.PayURL})
	return nil
}

// publicBase is the server's public base URL (no trailing slash), where
// the provider's page sends the buyer back to: Config.PublicURL, or else
// the scheme and Host of the request (the buyer's own choice, for the
// buyer's own browser).
func (s *Server) publicBase(r *http.Request) string {
	if s.cfg.PublicURL != "" {
		return strings.TrimRight(s.cfg.PublicURL, "/")
	}
	return scheme(r) + "://" + r.Host
}

// notifyBase is where the provider posts its notifications:
// Config.PublicURL, or else the address this server took the request on.
// Never the request's Host: a buyer could send the notification of their
// payment anywhere (it would not reach the shop, and the server's
// in-process provider would post to any host the buyer names).
func (s *Server) notifyBase(r *http.Request) string {
	if s.cfg.PublicURL != "" {
		return strings.TrimRight(s.cfg.PublicURL, "/")
	}
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(*net.TCPAddr); ok {
		// As a URL's host: an IPv6 zone is written %25zone (RFC 6874).
		host := a.IP.String()
		if a.Zone != "" {
			host += "%25" + a.Zone
		}
		return scheme(r) + "://" + net.JoinHostPort(host, strconv.Itoa(a.Port))
	}
	return scheme(r) + "://" + r.Host // no TCP listener (a handler called directly, in tests)
}

func scheme(r *http.Request) string {
	if r.TLS != nil {
		return "https"
	}
	return "http"
}
