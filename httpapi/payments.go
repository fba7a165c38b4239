package httpapi

import (
	"io"
	"net/http"
	"net/url"

	"seckill"
)

// notifyMaxBody bounds a provider notification: a dozen short fields.
const notifyMaxBody = 16 << 10

// paymentNotify is POST /api/payments/notify, the provider's asynchronous
// notification: form-encoded, signed, no session. It answers the plain
// text "success" once the notification is handled (also for a replay, a
// closed trade, or money for an order that can no longer take it, which
// is refunded); 400 bad_signature or amount_mismatch otherwise, and any
// other error makes the provider resend later.
func (s *Server) paymentNotify(w http.ResponseWriter, r *http.Request) error {
	b, err := io.ReadAll(io.LimitReader(r.Body, notifyMaxBody+1))
	if err != nil {
		// Not the read's error: it names the listener's address and port
		// (a timeout's "read tcp 10.0.3.7:8080->…: i/o timeout").
		return seckill.Errorf(seckill.EInvalid, "the notification could not be read")
	}
	if len(b) > notifyMaxBody {
		return seckill.Errorf(seckill.ETooLarge, "notification is over %d bytes", notifyMaxBody)
	}
	form, err := url.ParseQuery(string(b))
	if err != nil {
		return seckill.Errorf(seckill.EBadSignature, "notification is not a form")
	}
	if err := s.cfg.Engine.HandleNotification(r.Context(), form); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, "success")
	return nil
}

// reconcilePayment is POST /api/admin/orders/{id}/reconcile-payment: asks
// the provider for the order's payment and applies a success as its
// notification would have; 200 {"order":…} as it is after, 404 if the
// order or its payment is unknown.
func (s *Server) reconcilePayment(w http.ResponseWriter, r *http.Request, _ *seckill.Session) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	o, err := s.cfg.Engine.ReconcilePayment(r.Context(), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"order": o})
	return nil
}
