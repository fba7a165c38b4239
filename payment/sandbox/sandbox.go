// Package sandbox is a payment provider for development, tests and
// benchmarks: a real, separate component that speaks the wire format of
// package payment (Alipay's), with its own RSA key pair, its own pay page
// and its own notifier.
//
//   - POST /sandbox/gateway.do is its API (create, query, refund, close),
//     for requests signed with the merchant's key; it answers signed with
//     its own key.
//   - GET /sandbox/pay/{payment_id} is the pay page a buyer is sent to: a
//     plain HTML form with two buttons, Pay and Fail. Pay marks the
//     payment paid (TRADE_SUCCESS) and sends the buyer back to the
//     payment's return URL; Fail is a declined attempt, as a refused card
//     is: the payment waits still, the page says so and offers Pay again.
//   - A payment created with an expiry (time_expire) can be paid until
//     then and never after: from its expiry on, query, create and the pay
//     page see it closed, a click on Pay closes it, and the notifier
//     closes it even if nobody looks (TRADE_CLOSED, notified like a
//     close).
//   - The notifier POSTs the signed notification of every payment that was
//     paid or closed to its notify URL, and sends it again on the
//     real provider's schedule (2m, 10m, 10m, 1h, 2h, 6h, 15h after the
//     failed tries, 8 tries in all; Config.RetryScale compresses it) until
//     the answer is 200 with the body "success". What it owes is in SQLite
//     before anyone learns of the payment, so neither a restart nor a crash
//     loses a notification.
//
// A Sandbox is an http.Handler for the paths above: mount it under
// "/sandbox/" in another server, or serve it alone (`seckill sandbox`).
// Its state lives in Config.DataDir: sandbox.db, and its key pair
// sandbox.pem (0600) and sandbox.pub.pem, generated on first start.
package sandbox

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"seckill/payment"
)

// DefaultAppID is the merchant id the sandbox and the shop agree on when
// neither is told another.
const DefaultAppID = "2021000000000001"

// AlipaySchedule is the real provider's resend schedule: the waits after
// the first, second, … failed try; after the last, it gives up.
var AlipaySchedule = []time.Duration{
	2 * time.Minute, 10 * time.Minute, 10 * time.Minute,
	time.Hour, 2 * time.Hour, 6 * time.Hour, 15 * time.Hour,
}

// Config configures a Sandbox.
type Config struct {
	// DataDir holds sandbox.db and, unless Key is given, the key pair.
	DataDir string
	// Key is the sandbox's private key (default: LoadOrCreateKey of
	// DataDir/sandbox.pem).
	Key *rsa.PrivateKey
	// AppID is the one merchant it serves (default DefaultAppID).
	AppID string
	// MerchantKey checks the merchant's requests. If nil, MerchantKeyFile
	// is read when a request first needs it, and again until it exists, so
	// the sandbox may start before the shop has made its key.
	MerchantKey     *rsa.PublicKey
	MerchantKeyFile string
	// PublicURL is the base URL buyers' browsers reach the sandbox at
	// ("http://127.0.0.1:8090"); pay URLs start with it. Default: the
	// scheme and Host of the API request that created the payment.
	PublicURL string
	// Schedule is the resend schedule (default AlipaySchedule) and
	// RetryScale multiplies it (default 1; 0.001 turns 2 minutes into
	// 120 ms).
	Schedule   []time.Duration
	RetryScale float64
	// NotifyTimeout bounds one try (default 15 s); Workers is how many
	// notifications are sent at once (default 8).
	NotifyTimeout time.Duration
	Workers       int
	// HTTPClient sends the notifications (default: one that does not
	// follow redirects: the answer must come from the notify URL itself).
	HTTPClient *http.Client
	// Now is the sandbox's clock (default time.Now).
	Now func() time.Time
	// Manual leaves the notifier off: the caller sends what is due with
	// DeliverDue (tests with a fake clock do).
	Manual bool
	Log    *slog.Logger
}

// Sandbox is the provider. Open it, serve it, Close it.
type Sandbox struct {
	cfg     Config
	key     *rsa.PrivateKey
	keyPath string
	store   *store
	mux     *http.ServeMux
	log     *slog.Logger

	merchantMu sync.Mutex
	merchant   *rsa.PublicKey

	kick   chan struct{}
	stop   context.CancelFunc
	ctx    context.Context // ends at Close: cancels deliveries in flight
	done   sync.WaitGroup
	closed sync.Once
}

var _ http.Handler = (*Sandbox)(nil)

// Open opens (or creates) the sandbox's state in cfg.DataDir and, unless
// cfg.Manual, starts its notifier, which at once sends what an earlier run
// still owed.
func Open(ctx context.Context, cfg Config) (*Sandbox, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("sandbox: no data directory")
	}
	if cfg.RetryScale < 0 {
		return nil, errors.New("sandbox: negative retry scale")
	}
	if cfg.RetryScale == 0 {
		cfg.RetryScale = 1
	}
	if cfg.Schedule == nil {
		cfg.Schedule = AlipaySchedule
	}
	if cfg.AppID == "" {
		cfg.AppID = DefaultAppID
	}
	if cfg.NotifyTimeout <= 0 {
		cfg.NotifyTimeout = 15 * time.Second
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 8
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	s := &Sandbox{cfg: cfg, key: cfg.Key, merchant: cfg.MerchantKey, log: cfg.Log, kick: make(chan struct{}, 1)}
	if s.key == nil {
		s.keyPath = filepath.Join(cfg.DataDir, "sandbox.pem")
		var err error
		if s.key, err = payment.LoadOrCreateKey(s.keyPath); err != nil {
			return nil, fmt.Errorf("sandbox: %w", err)
		}
	}
	var err error
	if s.store, err = openStore(ctx, cfg.DataDir); err != nil {
		return nil, err
	}
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("POST /sandbox/gateway.do", s.gateway)
	s.mux.HandleFunc("GET /sandbox/pay/{id}", s.payPage)
	s.mux.HandleFunc("POST /sandbox/pay/{id}", s.payPost)
	s.ctx, s.stop = context.WithCancel(context.WithoutCancel(ctx))
	if !cfg.Manual {
		s.done.Add(1)
		go func() {
			defer s.done.Done()
			s.run(s.ctx)
		}()
	}
	return s, nil
}

// Close stops the notifier, abandoning (without counting) the tries in
// flight, which the next Open sends again, and closes the state.
func (s *Sandbox) Close() error {
	var err error
	s.closed.Do(func() {
		s.stop()
		s.done.Wait()
		err = s.store.close()
	})
	return err
}

// ServeHTTP serves the API and the pay page under /sandbox/.
func (s *Sandbox) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// PublicKey is the sandbox's public key: the shop checks notifications
// and answers with it.
func (s *Sandbox) PublicKey() *rsa.PublicKey { return &s.key.PublicKey }

// PublicKeyPath is the file holding PublicKey (PEM), "" when the key was
// given in Config.
func (s *Sandbox) PublicKeyPath() string {
	if s.keyPath == "" {
		return ""
	}
	return payment.PublicKeyPath(s.keyPath)
}

// Notifications lists the notifications made for a payment (by trade
// number), oldest first: what was delivered, what is still owed.
func (s *Sandbox) Notifications(ctx context.Context, tradeNo string) ([]NotificationState, error) {
	return s.store.notifications(ctx, tradeNo)
}

// merchantKey returns the key that checks requests, reading
// MerchantKeyFile if it was not read yet.
func (s *Sandbox) merchantKey() (*rsa.PublicKey, error) {
	s.merchantMu.Lock()
	defer s.merchantMu.Unlock()
	if s.merchant != nil {
		return s.merchant, nil
	}
	if s.cfg.MerchantKeyFile == "" {
		return nil, errors.New("no merchant public key configured")
	}
	k, err := payment.ReadPublicKey(s.cfg.MerchantKeyFile)
	if err != nil {
		return nil, err
	}
	s.merchant = k
	return k, nil
}

// newTradeNo returns a trade number in the provider's style: the date and
// 20 random digits (unguessable: the pay page has no other protection).
func newTradeNo(now time.Time) string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s%020d", now.In(payment.China).Format("20060102"), binary.BigEndian.Uint64(b[:]))
}

func newNotifyID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
