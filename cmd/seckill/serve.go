package main

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"seckill"
	"seckill/account"
	"seckill/captcha"
	"seckill/checkout"
	"seckill/httpapi"
	"seckill/internal/connlimit"
	"seckill/internal/redact"
	"seckill/metrics"
	"seckill/mq"
	"seckill/payment"
	"seckill/payment/sandbox"
	"seckill/sqldb"
	"seckill/web"
)

// Config is everything `seckill serve` can be told.
type Config struct {
	Addr          string
	DataDir       string
	DB            string
	NATS          string
	QueuePrefix   string
	Redis         string
	RedisPrefix   string
	Secret        string
	AdminPhone    string
	AdminPassword string
	UserRate      float64
	UserBurst     int
	IPRate        float64
	IPBurst       int
	// UserReadRate and UserReadBurst are the per-user bucket of
	// authenticated reads (httpapi.Config.Reads), per instance; a rate of
	// 0 or less turns it off.
	UserReadRate  float64
	UserReadBurst int
	// WSPerAddress is how many WebSockets one client address may hold on
	// an instance (httpapi.WSConfig.MaxPerAddress); 0: no limit.
	WSPerAddress int
	InFlight     int
	AdmitFactor  float64 // purchases a second per unit of stock a sale admits, per instance; 0: no cap
	BatchSize    int
	PayWindow    time.Duration
	SessionTTL   time.Duration
	// SessionCache is how many sessions an instance keeps in memory (about
	// 150 bytes each): a crowd of more buyers than this pays a store lookup
	// for some of its requests.
	SessionCache int
	// TrustedProxies lists the proxies (CIDRs) whose X-Forwarded-For
	// entries are believed. TrustProxy, deprecated, adds loopback to them.
	TrustedProxies string
	TrustProxy     bool
	AllowedOrigins string // other origins whose pages may post with the cookie (httpapi/csrf.go)
	CookieSecure   bool   // the session cookie is Secure whatever the request says
	LogLevel       string
	// The public listener's timeouts (http.Server's): ReadTimeout bounds
	// headers and body together, so a client trickling either is cut off.
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	// MaxHeaderBytes bounds a request's headers on the public listener
	// (431 beyond); net/http's default is 1 MiB.
	MaxHeaderBytes int
	// MaxConns bounds the public listener's open connections in all (0:
	// none), MaxConnsPerIP those of one peer address other than a trusted
	// proxy (0: none); see internal/connlimit.
	MaxConns, MaxConnsPerIP int
	Ops                     OpsConfig // metrics, pprof, bench provisioning (observe.go)
	// ReconcileEvery and ReconcileAge tune the reconciler; AckWait is how
	// long the queue waits for a writer's ack before redelivering.
	Writers        int // order writer goroutines
	ReconcileEvery time.Duration
	ReconcileAge   time.Duration
	AckWait        time.Duration
	// DBTimeout bounds each operation on a PostgreSQL or MySQL database
	// (0: none): past it the database counts as away, 503 busy (see
	// sqldb.DB.SetTimeout).
	DBTimeout time.Duration
	// NATSReplicas is how many servers of an external NATS cluster keep
	// the order stream.
	NATSReplicas int
	// SweepEvery is how often each instance cancels orders past their
	// pay deadline (an order is cancelled within about this of it).
	SweepEvery time.Duration
	// The payment provider: its gateway URL (default: the sandbox served
	// in-process under /sandbox/), its public key (PEM file; default the
	// in-process sandbox's) and our app id there. PublicURL is the base
	// URL clients and the provider reach this server at (default: the
	// return URL from each request's Host, the notify URL from the
	// address the request came in on, never from its Host).
	PayProviderURL string
	PayProviderKey string
	PayAppID       string
	// PayMerchantKey is the PEM file of the shop's private key, which
	// signs its requests to the provider; empty: <data>/payment/merchant.pem,
	// made at the first start. Instances sharing one provider share it.
	PayMerchantKey string
	PublicURL      string
}

// Main is the server process: NewMain, ParseFlags, Run, Close. Tests run it
// in-process on ":0".
type Main struct {
	Config Config
	log    *slog.Logger
	// now is this instance's own clock (testClock): the engine's, the
	// captcha stores' and the API's, so that the skew the engine measures
	// from the database's clock applies to each.
	now func() time.Time

	db       *sqldb.DB
	queue    *mq.Queue
	sandbox  *sandbox.Sandbox // the in-process payment provider; nil with --pay-provider-url
	engine   *checkout.Engine
	accounts *account.Service
	shared   *shared
	api      *httpapi.Server
	srv      *http.Server
	metrics  *metrics.Metrics
	ln       net.Listener
	opsSrv   *http.Server // the operations listener's, nil when off
	opsLn    net.Listener

	writerStop context.CancelFunc
	writerDone sync.WaitGroup
	// serveErr receives the first error of a listener that stopped on its
	// own (not by Close); Wait returns it.
	serveErr chan error
}

// NewMain returns a Main with the defaults of a zero-setup run.
func NewMain() *Main {
	return &Main{
		Config: Config{
			Addr: ":8080", DataDir: "data", QueuePrefix: mq.DefaultPrefix, RedisPrefix: defaultRedisPrefix, NATSReplicas: 1,
			UserRate: 5, UserBurst: 10, IPRate: 200, IPBurst: 400, WSPerAddress: 1024,
			UserReadRate: httpapi.DefaultReads.Rate, UserReadBurst: httpapi.DefaultReads.Burst,
			InFlight: 4096, AdmitFactor: 20, BatchSize: 2000,
			PayWindow: 10 * time.Minute, SessionTTL: 24 * time.Hour, SessionCache: 1_000_000, LogLevel: "info",
			Writers: 2, ReconcileEvery: 5 * time.Second, ReconcileAge: 10 * time.Second, AckWait: 30 * time.Second,
			DBTimeout:  sqldb.DefaultTimeout,
			SweepEvery: time.Second, PayAppID: sandbox.DefaultAppID,
			ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
			WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 32 << 10,
			MaxConns: connlimit.DefaultTotal(), MaxConnsPerIP: 2048,
			Ops: OpsConfig{Addr: defaultOpsAddr},
		},
		serveErr: make(chan error, 1),
	}
}

// soloSessionTTL is how long a single instance keeps a session in memory
// without asking the store: it only bounds how long an idle session holds
// memory, since nothing else changes sessions.
const soloSessionTTL = 10 * time.Minute

// sessionCacheTTL is, with a Redis Cluster, the longest an instance serves
// a session from memory without asking the store: the bound on a logout or
// revocation on another instance whose announcement was lost while every
// subscription stayed up (a node cut off from the cluster bus; SECURITY.md).
// A hit after sessionRefreshAfter refreshes the entry in the background.
//
// On a single Redis no announcement is lost that way while the broadcast
// is followed: the deletion and its PUBLISH are one script on the one
// server, and every way to miss one (the subscription cut or silent, a
// new server) empties the cache. An entry read while the broadcast was
// followed, and not reset since, is so served up to nodeSessionTTL,
// refreshed after nodeSessionRefreshAfter (sessionCache); the TTL there is
// the last line only (a server demoted under open connections). One read
// while the feed was down (an instance cut off from Redis alone answers
// from SQL, and hears no logout) keeps the 10 s.
// A refresh is a Redis script per active buyer: every 5 s, it was a sixth
// of a server's CPU in a crowd's first presses (BENCHMARKS.md, run V) and
// as many scripts a second on Redis as a fifth of the buyers on the page;
// every 30 s, a buyer who fetched the purchase path in the half minute
// before pressing buys with none.
const (
	sessionCacheTTL         = 10 * time.Second
	sessionRefreshAfter     = 5 * time.Second
	nodeSessionTTL          = time.Minute
	nodeSessionRefreshAfter = 30 * time.Second
)

// ParseFlags reads flags, falling back to SECKILL_* environment variables
// for flags not given (--admin-phone ← SECKILL_ADMIN_PHONE).
func (m *Main) ParseFlags(args []string) error {
	c := &m.Config
	fs := flag.NewFlagSet("seckill serve", flag.ContinueOnError)
	fs.StringVar(&c.Addr, "addr", c.Addr, "listen address")
	fs.StringVar(&c.DataDir, "data", c.DataDir, "data directory of the embedded backends")
	fs.StringVar(&c.DB, "db", c.DB, "database URL (default sqlite:<data>/seckill.db)")
	fs.DurationVar(&c.DBTimeout, "db-timeout", c.DBTimeout, "longest a PostgreSQL or MySQL operation may take before the database counts as away, 503 busy (0: no bound; SQLite has none)")
	fs.StringVar(&c.NATS, "nats", c.NATS, "external NATS URL (default: embedded JetStream in <data>/nats)")
	fs.StringVar(&c.QueuePrefix, "queue-prefix", c.QueuePrefix, "names the stream and subjects on NATS; instances of one deployment share it")
	fs.StringVar(&c.Redis, "redis", c.Redis, "Redis URL for the shared gate, sessions and limits: redis://host:port, or a comma-separated list of Cluster nodes (default: in-process)")
	fs.StringVar(&c.RedisPrefix, "redis-prefix", c.RedisPrefix, "prefix of every Redis key; instances of one deployment share it")
	fs.StringVar(&c.Secret, "secret", c.Secret, "HMAC secret of purchase paths, at least 16 bytes, same on every instance (default: generated into <data>/secret)")
	fs.StringVar(&c.AdminPhone, "admin-phone", c.AdminPhone, "create or update this admin account at start")
	fs.StringVar(&c.AdminPassword, "admin-password", c.AdminPassword, "password of the admin account")
	fs.Float64Var(&c.UserRate, "user-rate", c.UserRate, "buying requests per second per user (0: no limit); purchases count per user and sale")
	fs.IntVar(&c.UserBurst, "user-burst", c.UserBurst, "burst of the per-user bucket")
	fs.Float64Var(&c.IPRate, "ip-rate", c.IPRate, "requests per second per client IP (0: no limit)")
	fs.IntVar(&c.IPBurst, "ip-burst", c.IPBurst, "burst of the per-IP bucket")
	fs.Float64Var(&c.UserReadRate, "user-read-rate", c.UserReadRate, "authenticated reads (/api/me, orders, a sale's result) per second per user, per instance (0: no limit)")
	fs.IntVar(&c.UserReadBurst, "user-read-burst", c.UserReadBurst, "burst of the per-user bucket of reads")
	fs.IntVar(&c.WSPerAddress, "ws-per-address", c.WSPerAddress, "WebSockets one client IP (an IPv6 /64) may hold open on this instance, whatever its accounts; beyond, 429 (0: no limit)")
	fs.IntVar(&c.InFlight, "in-flight", c.InFlight, "purchases between gate and queue at once before answering 503")
	fs.IntVar(&c.BatchSize, "batch", c.BatchSize, "orders per SQL transaction of the order writer")
	fs.IntVar(&c.Writers, "writers", c.Writers, "order writers per instance: one's fetch and ack overlap another's SQL")
	fs.DurationVar(&c.PayWindow, "pay-window", c.PayWindow, "time an order waits for payment")
	fs.DurationVar(&c.SessionTTL, "session-ttl", c.SessionTTL, "session lifetime since last use")
	fs.IntVar(&c.SessionCache, "session-cache", c.SessionCache, "sessions kept in memory (about 150 bytes each); a crowd of more buyers pays store lookups")
	fs.StringVar(&c.TrustedProxies, "trusted-proxies", c.TrustedProxies, "comma-separated CIDRs of the proxies in front (e.g. 10.0.0.2/32): the client IP is the right-most X-Forwarded-For address not among them (default: none, the peer's address)")
	fs.StringVar(&c.AllowedOrigins, "allowed-origins", c.AllowedOrigins, "comma-separated origins (https://shop.example) besides the request's own host whose pages may send unsafe requests with the session cookie")
	fs.BoolVar(&c.CookieSecure, "cookie-secure", c.CookieSecure, "mark the session cookie Secure always (clients reach seckill over HTTPS only); without it, Secure when the connection is TLS or a trusted proxy sends X-Forwarded-Proto: https")
	fs.Float64Var(&c.AdmitFactor, "admit-factor", c.AdmitFactor, "a sale lets at most this many purchase attempts a second per unit of stock through to the gate, per instance; beyond, 503 busy (0: no cap)")
	fs.BoolVar(&c.TrustProxy, "trust-proxy", c.TrustProxy, "deprecated: trust a proxy on loopback, as --trusted-proxies 127.0.0.0/8,::1/128")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error")
	fs.DurationVar(&c.ReadHeaderTimeout, "read-header-timeout", c.ReadHeaderTimeout, "longest time a client may take to send a request's headers")
	fs.DurationVar(&c.ReadTimeout, "read-timeout", c.ReadTimeout, "longest time a client may take to send a whole request, body included (WebSockets are exempt once open)")
	fs.DurationVar(&c.WriteTimeout, "write-timeout", c.WriteTimeout, "longest time from a request's headers to the end of its answer (WebSockets are exempt once open)")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", c.IdleTimeout, "how long a keep-alive connection may wait for its next request")
	fs.IntVar(&c.MaxHeaderBytes, "max-header-bytes", c.MaxHeaderBytes, "largest request headers (bytes) the public listener reads; larger get 431")
	fs.IntVar(&c.MaxConns, "max-conns", c.MaxConns, "most connections the public listener holds at once, further ones wait to be accepted (default: the open-file limit less a reserve for the stores and the queue; 0: no bound)")
	fs.IntVar(&c.MaxConnsPerIP, "max-conns-per-ip", c.MaxConnsPerIP, "most connections one client address holds at once (the next is closed at once); trusted proxies are exempt (0: no bound)")
	fs.DurationVar(&c.ReconcileEvery, "reconcile-every", c.ReconcileEvery, "how often to look for reservations that never reached the queue")
	fs.DurationVar(&c.ReconcileAge, "reconcile-age", c.ReconcileAge, "age at which such a reservation is released, once still so a publish timeout (3 s) later (well above that timeout)")
	fs.DurationVar(&c.AckWait, "ack-wait", c.AckWait, "time a fetched order message may stay unacked before another writer gets it")
	fs.IntVar(&c.NATSReplicas, "nats-replicas", c.NATSReplicas, "servers of an external NATS cluster that keep the order stream (3 survives losing one)")
	fs.DurationVar(&c.SweepEvery, "sweep-every", c.SweepEvery, "how often to cancel orders past their pay deadline")
	fs.StringVar(&c.PayProviderURL, "pay-provider-url", c.PayProviderURL, "payment provider's gateway URL, e.g. http://127.0.0.1:8090/sandbox/gateway.do of 'seckill sandbox' (default: the sandbox served by this server under /sandbox/)")
	fs.StringVar(&c.PayProviderKey, "pay-provider-key", c.PayProviderKey, "PEM file of the provider's public key (required with --pay-provider-url)")
	fs.StringVar(&c.PayAppID, "pay-app-id", c.PayAppID, "our app id at the payment provider")
	fs.StringVar(&c.PayMerchantKey, "pay-merchant-key", c.PayMerchantKey, "PEM file of our private key, which signs our requests to the provider; every instance using one provider needs the same (default: made into <data>/payment/merchant.pem)")
	fs.StringVar(&c.PublicURL, "public-url", c.PublicURL, "base URL clients and the payment provider reach this server at, for notify and return URLs (default: the return URL from each request's Host, the notify URL from the address the request came in on)")
	c.Ops.flags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		env := "SECKILL_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(env); ok && !given[f.Name] && err == nil {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s=%q: %w", env, v, e)
			}
		}
	})
	return err
}

// masked returns the config as log attributes with secrets hidden.
func (c Config) masked() []any {
	hide := func(s string) string {
		if s == "" {
			return ""
		}
		return "***"
	}
	return []any{
		"addr", c.Addr, "data", c.DataDir, "db", redact.URL(c.DB), "db_timeout", c.DBTimeout, "nats", redact.URL(c.NATS),
		"queue_prefix", c.QueuePrefix, "redis", redact.URL(c.Redis), "redis_prefix", c.RedisPrefix,
		"secret", hide(c.Secret), "admin_phone", c.AdminPhone, "admin_password", hide(c.AdminPassword),
		"user_rate", c.UserRate, "user_burst", c.UserBurst, "ip_rate", c.IPRate, "ip_burst", c.IPBurst, "ws_per_address", c.WSPerAddress,
		"user_read_rate", c.UserReadRate, "user_read_burst", c.UserReadBurst,
		"in_flight", c.InFlight, "batch", c.BatchSize, "writers", c.Writers, "pay_window", c.PayWindow,
		"session_ttl", c.SessionTTL, "trusted_proxies", c.TrustedProxies, "trust_proxy", c.TrustProxy,
		"ops_addr", c.Ops.Addr, "read_header_timeout", c.ReadHeaderTimeout, "read_timeout", c.ReadTimeout,
		"write_timeout", c.WriteTimeout, "idle_timeout", c.IdleTimeout, "max_header_bytes", c.MaxHeaderBytes,
		"max_conns", c.MaxConns, "max_conns_per_ip", c.MaxConnsPerIP,
		"sweep_every", c.SweepEvery, "pay_provider_url", redact.URL(c.PayProviderURL),
		"pay_provider_key", c.PayProviderKey, "pay_app_id", c.PayAppID, "pay_merchant_key", c.PayMerchantKey, "public_url", c.PublicURL,
	}
}

// Run opens the backends, starts listening, rebuilds the stock gate (the
// server answers 503 to purchases until then) and starts the order writer.
func (m *Main) Run(ctx context.Context) (err error) {
	c := &m.Config
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return fmt.Errorf("log level: %w", err)
	}
	if m.log == nil {
		m.log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	}
	if err := privateDataDir(c.DataDir); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	proxies, err := httpapi.ParseTrustedProxies(c.TrustedProxies)
	if err != nil {
		return fmt.Errorf("--trusted-proxies: %w", err)
	}
	if c.TrustProxy {
		// It used to believe the left-most X-Forwarded-For entry, which
		// the client writes.
		m.log.Warn("--trust-proxy is deprecated and now trusts a proxy on loopback only; list your proxies in --trusted-proxies")
		proxies = append(proxies, httpapi.LoopbackProxies...)
	}
	if c.Writers < 1 {
		return fmt.Errorf("--writers must be at least 1")
	}
	if c.SweepEvery <= 0 {
		return fmt.Errorf("--sweep-every must be positive")
	}
	if c.NATS == "" && c.NATSReplicas > 1 {
		return fmt.Errorf("--nats-replicas above 1 needs --nats: the embedded server keeps one copy")
	}
	if c.PayWindow <= 0 {
		return fmt.Errorf("--pay-window must be positive")
	}
	if c.Secret != "" && len(c.Secret) < checkout.MinSecret {
		return fmt.Errorf("--secret must be at least %d bytes", checkout.MinSecret)
	}
	if c.MaxHeaderBytes < 1 {
		return fmt.Errorf("--max-header-bytes must be positive")
	}
	if c.MaxConns < 0 || c.MaxConnsPerIP < 0 {
		return fmt.Errorf("--max-conns and --max-conns-per-ip must not be negative (0: no bound)")
	}
	if c.SessionCache < 1 {
		return fmt.Errorf("--session-cache must be at least 1")
	}
	reads := httpapi.Budget{Rate: c.UserReadRate, Burst: c.UserReadBurst}
	if c.UserReadRate <= 0 {
		reads.Rate = -1 // off, as --user-rate 0 is (Budget's rate 0 would never refill)
	} else if c.UserReadBurst < 1 {
		return fmt.Errorf("--user-read-burst must be at least 1 (or --user-read-rate 0 for no limit)")
	}
	if (c.PayProviderURL == "") != (c.PayProviderKey == "") {
		return fmt.Errorf("--pay-provider-url and --pay-provider-key go together")
	}
	if c.ReconcileAge <= 3*time.Second || c.ReconcileEvery <= 0 {
		return fmt.Errorf("--reconcile-age must exceed the 3 s publish timeout and --reconcile-every be positive")
	}
	if c.DBTimeout < 0 {
		return fmt.Errorf("--db-timeout must not be negative (0: no bound)")
	}
	if c.DB == "" {
		c.DB = "sqlite:" + filepath.Join(c.DataDir, "seckill.db")
	}
	secret := []byte(c.Secret)
	if c.Secret == "" {
		if secret, err = dataSecret(c.DataDir); err != nil {
			return err
		}
	}
	m.log.Info("config", c.masked()...)

	// A backend that cannot be reached yet (restarting, failing over,
	// not up yet after a reboot) is waited for, as recovery's busy
	// answers are: an instance restarted during a database outage used to
	// exit at once, leaving its supervisor (or nobody) to try again.
	if err := retryUnreachable(ctx, m.log, "database", func(ctx context.Context) (err error) {
		m.db, err = sqldb.Open(ctx, c.DB)
		return err
	}); err != nil {
		return fmt.Errorf("database: %w", err)
	}
	m.db.SetTimeout(c.DBTimeout)
	if err := retryUnreachable(ctx, m.log, "queue", func(ctx context.Context) (err error) {
		m.queue, err = mq.Open(ctx, mq.Config{URL: c.NATS, DataDir: c.DataDir, Logger: m.log, Prefix: c.QueuePrefix, AckWait: c.AckWait, Replicas: c.NATSReplicas})
		return err
	}); err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	m.now = testClock(m.log)
	if m.shared, err = m.openShared(ctx, m.db); err != nil {
		return err
	}
	if err := retryUnreachable(ctx, m.log, "gate keys", func(ctx context.Context) error {
		return m.shared.checkGateKeys(ctx, m.db)
	}); err != nil {
		return err
	}
	// With Redis, other instances may log a session out: their deletions
	// are announced on Redis and evicted from this cache at once
	// (followRevocations), and if an announcement is lost an entry is
	// served no longer than the TTL of sessionCache. A hit on an older
	// entry than its refresh age looks it up again in the background, so a
	// buyer's tries in a crowd cost no round trip. Without Redis this is
	// the only instance (its gate is in-process), every session change goes
	// through this cache, and an entry stays true until the session
	// expires: looking it up again would only cost the store a query per
	// buyer in the middle of a crowd (a quarter of the CPU in a profile of
	// one).
	sessions := sessionCache(m.shared, c.SessionCache)
	if m.accounts, err = account.New(m.db, sessions, account.Config{
		SessionTTL: c.SessionTTL, Phones: m.shared.loginPhones, IPs: m.shared.loginIPs,
		PhoneLogins: m.shared.phoneLogins, TokenKey: tokenKey(secret),
	}); err != nil {
		return err
	}
	if c.AdminPhone != "" || c.AdminPassword != "" {
		// Waits out the database as the opens do (found by review: a
		// database lost between the open and this exited the start).
		if err := retryUnreachable(ctx, m.log, "admin account", func(ctx context.Context) error {
			_, err := m.accounts.EnsureAdmin(ctx, c.AdminPhone, c.AdminPassword)
			return err
		}); err != nil {
			return err
		}
		m.log.Info("admin account ready", "phone", c.AdminPhone)
		if weakAdminPassword(c.AdminPassword) {
			m.log.Warn("the admin's password is the README's example or shorter than 12 characters: anyone who read it can log in as the admin; set SECKILL_ADMIN_PASSWORD to a long secret before the shop is reachable from other machines")
		}
	}
	// The provider's gateway may be this server (the in-process sandbox):
	// listen first, so its URL is known.
	ln, err := net.Listen("tcp", c.Addr)
	if err != nil {
		return err
	}
	m.ln = connlimit.New(ln, c.MaxConns, c.MaxConnsPerIP, func(a netip.Addr) bool {
		return slices.ContainsFunc(proxies, func(p netip.Prefix) bool { return p.Contains(a) })
	})
	payments, err := m.openPayments(ctx)
	if err != nil {
		return err
	}
	m.engine, err = checkout.New(checkout.Config{
		Secret: secret, PayWindow: c.PayWindow, InFlight: c.InFlight, AdmitFactor: c.AdmitFactor, BatchSize: c.BatchSize,
		Observer: m.openMetrics(), Now: m.now, CaptchaEvery: time.Duration(float64(time.Second) / captchaRefill),
		// Purchases' per-user limit, per user and sale, taken by the gate
		// in the step that reserves; captcha, path, cancel and pay take
		// the shared per-user limiter's.
		PurchaseLimit: seckill.Bucket{PerSecond: c.UserRate, Burst: c.UserBurst},
	}, checkout.Backends{
		Sales: m.db, Orders: m.db, Gate: m.shared.gate, Queue: m.queue, Bus: m.queue,
		Captchas: m.shared.captchas, CaptchaMaker: captcha.Maker{}, CaptchaLimit: m.shared.captchaLim,
		Locker: m.shared.locker, Payments: payments, Clock: m.db,
	}, m.log)
	if err != nil {
		return err
	}

	m.api = httpapi.New(httpapi.Config{
		Engine: m.engine, Accounts: m.accounts, Orders: m.db,
		UserLimit: m.shared.userLim,
		IPLimit:   m.shared.ipLim, PurchaseIPLimit: m.shared.purchaseIPLim,
		Reads:          reads,
		TrustedProxies: proxies, Static: web.Handler(), Log: m.log, PublicURL: c.PublicURL, Now: m.now,
		AllowedOrigins: httpapi.ParseOrigins(c.AllowedOrigins), CookieSecure: c.CookieSecure,
		Observe: m.metrics.ObserveHTTP, BenchUsers: m.benchUsers(),
		Ready: func(ctx context.Context) error {
			return answering(map[string]error{"database": m.db.Ping(ctx), "nats": m.queue.Ping(ctx), "redis": m.shared.ping(ctx)})
		},
		// Every instance's results reach this one's WebSockets, and so do
		// those the engine finds in SQL after their message was lost.
		Results: m.engine.Results(),
		// The instances share their dashboard counts on the same NATS, so
		// each admin's dashboard shows the whole cluster's traffic.
		DashBus:    m.queue,
		WebSockets: func(delta int) { m.metrics.WebSockets().Add(float64(delta)) },
		WS:         httpapi.WSConfig{MaxPerAddress: wsPerAddress(c.WSPerAddress), MaxTotal: max(0, c.MaxConns/2)},
	})
	// Every instance's session deletions reach this one's cache and then
	// its WebSockets: a logout or a revocation anywhere closes the
	// session's sockets here (the cache first, so that a handshake racing
	// the revocation cannot find the session there). Followed from here,
	// once the API exists: the feed's first subscription forgets every
	// session cached before it (reset), so nothing announced earlier is
	// lost. Without Redis every deletion passes through this instance.
	m.shared.followRevocations(func(tokenHash []byte) {
		sessions.Evict(tokenHash)
		m.api.SessionEnded(tokenHash)
	}, func(followed bool) {
		sessions.Reset()
		if followed {
			sessions.Followed()
		}
		m.api.RevocationsMissed()
	})
	// The public listener serves the API and the page only: metrics and
	// pprof live on the operations listener. Every timeout bounds what a
	// slow or silent client holds (a connection, a goroutine, a buffer).
	// Upgraded WebSockets are not bound by them: net/http clears a
	// connection's deadlines when it is hijacked, and the hub's pings find
	// dead sockets.
	var handler http.Handler = m.api
	if m.sandbox != nil {
		mux := http.NewServeMux()
		mux.Handle("/sandbox/", m.sandbox)
		mux.Handle("/", m.api)
		handler = mux
	}
	m.srv = &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: c.ReadHeaderTimeout, ReadTimeout: c.ReadTimeout,
		WriteTimeout: c.WriteTimeout, IdleTimeout: c.IdleTimeout,
		// A cookie and a bearer token are well under 1 KiB; net/http's
		// 1 MiB lets every connection hold a megabyte while it sends.
		MaxHeaderBytes: c.MaxHeaderBytes,
	}
	if cl, ok := m.ln.(*connlimit.Listener); ok {
		m.srv.ConnState = cl.ConnState // a full listener closes idle keep-alive connections
		m.metrics.Registry().MustRegister(
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "seckill_public_connections",
				Help: "Connections the public listener holds (--max-conns bounds them).",
			}, func() float64 { return float64(cl.Open()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "seckill_public_connections_refused_total",
				Help: "Connections answered 429 and closed at once: their address held --max-conns-per-ip.",
			}, func() float64 { return float64(cl.Refused()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "seckill_public_connections_evicted_total",
				Help: "Idle keep-alive connections closed to take a new one while the listener held --max-conns.",
			}, func() float64 { return float64(cl.Evicted()) }))
	}
	m.serveOn("public", m.srv, m.ln)
	if err := m.listenOps(); err != nil {
		return err
	}

	// Whatever was accepted before a crash becomes orders before anyone new
	// is admitted.
	start := time.Now()
	if err := retryBusy(ctx, m.log, recoverPatience, m.engine.Recover); err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	m.log.Info("recovered", "took", time.Since(start).Round(time.Millisecond))

	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	m.writerStop = cancel
	m.writerDone.Add(c.Writers + 3)
	for range c.Writers {
		go func() {
			defer m.writerDone.Done()
			m.engine.RunWriter(wctx)
		}()
	}
	go func() {
		defer m.writerDone.Done()
		m.engine.RunReconciler(wctx, c.ReconcileEvery, c.ReconcileAge)
	}()
	go func() {
		defer m.writerDone.Done()
		m.engine.RunSweeper(wctx, c.SweepEvery)
	}()
	go func() {
		defer m.writerDone.Done()
		sweepSessions(wctx, m.db, sessionSweepEvery, m.log)
	}()
	return nil
}

// openPayments returns the payment provider: a client of the gateway at
// --pay-provider-url, or else of the sandbox this server opens and serves
// under /sandbox/ (zero setup). Our key is --pay-merchant-key, or else
// <data>/payment/merchant.pem, made on first start; its public half, next
// to it, is for the provider.
func (m *Main) openPayments(ctx context.Context) (payment.Provider, error) {
	c := &m.Config
	var key *rsa.PrivateKey
	var err error
	if c.PayMerchantKey != "" {
		if key, err = payment.ReadPrivateKey(c.PayMerchantKey); err != nil {
			return nil, fmt.Errorf("--pay-merchant-key: %w", err)
		}
		if fi, err := os.Stat(c.PayMerchantKey); err == nil && fi.Mode().Perm()&0o077 != 0 {
			m.log.Warn("the merchant key file can be read by others than its owner: whoever reads it can sign as the shop; chmod 600 it",
				"path", c.PayMerchantKey, "mode", fi.Mode().Perm().String())
		}
	} else if key, err = payment.LoadOrCreateKey(payment.MerchantKeyPath(c.DataDir)); err != nil {
		return nil, fmt.Errorf("merchant key: %w", err)
	}
	cfg := payment.ClientConfig{GatewayURL: c.PayProviderURL, AppID: c.PayAppID, PrivateKey: key}
	if c.PayProviderURL != "" {
		if cfg.ProviderKey, err = payment.ReadPublicKey(c.PayProviderKey); err != nil {
			return nil, fmt.Errorf("--pay-provider-key: %w", err)
		}
	} else {
		m.sandbox, err = sandbox.Open(ctx, sandbox.Config{
			DataDir: filepath.Join(c.DataDir, "sandbox"), AppID: c.PayAppID,
			MerchantKey: &key.PublicKey, PublicURL: c.PublicURL, Log: m.log,
		})
		if err != nil {
			return nil, fmt.Errorf("payment sandbox: %w", err)
		}
		cfg.GatewayURL = m.URL() + "/sandbox/gateway.do"
		cfg.ProviderKey = m.sandbox.PublicKey()
		// Called in process, not through the public listener: a listener
		// held full, or this address at its bound, refused or delayed the
		// shop's calls to its own sandbox (found by review).
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second, Transport: handlerTransport{m.sandbox}}
		m.log.Warn("payments go to the sandbox served under /sandbox/: anyone may mark an order paid there without paying; set --pay-provider-url for a real sale")
		if c.Redis != "" {
			// Redis means several instances, as a rule: each one's sandbox
			// knows only its own trades, so behind a load balancer a pay
			// page is found one time in n.
			m.log.Warn("each instance serves its own sandbox: behind a load balancer, run one 'seckill sandbox' and point every instance at it (--pay-provider-url, --pay-provider-key, the same --pay-merchant-key)")
		}
	}
	if c.Redis != "" && c.PublicURL == "" {
		// Several instances, as a rule, and the notify URL names this one:
		// while it is down the provider cannot tell the shop of a payment.
		m.log.Warn("without --public-url a payment's notification goes to the instance that opened it, and waits while that instance is down; the sweeper asks the provider before it cancels such an order at its deadline, so set --public-url to the load balancer's URL for notifications to reach any instance")
	}
	return payment.NewClient(cfg)
}

// serveOn serves srv on ln in the background. A listener that stops for
// any reason but Close is reported to Wait: http.Server.Serve retries
// temporary accept errors itself, so what comes back is fatal.
func (m *Main) serveOn(name string, srv *http.Server, ln net.Listener) {
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			select {
			case m.serveErr <- fmt.Errorf("%s listener on %s: %w", name, ln.Addr(), err):
			default: // one failure is reported already: it stops the server
			}
		}
	}()
}

// Wait blocks until ctx ends, returning nil, or until one of the
// listeners fails, returning its error. After a failure the server answers
// nobody on that listener: the caller should Close and exit non-zero, so
// that a supervisor restarts it and a load balancer stops sending to it.
func (m *Main) Wait(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case err := <-m.serveErr:
		return err
	}
}

// URL is where the server listens.
func (m *Main) URL() string {
	if m.ln == nil {
		return ""
	}
	addr := m.ln.Addr().(*net.TCPAddr)
	host := addr.IP.String()
	if addr.IP.IsUnspecified() {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, fmt.Sprint(addr.Port))
}

// Close shuts down gracefully: stop admitting, finish HTTP requests in
// flight, drain the queue into SQL (pushing the results to the WebSockets
// still open), close the WebSockets, then close the queue and the database.
func (m *Main) Close() error {
	var errs []error
	if m.engine != nil {
		m.engine.StopAdmitting()
	}
	if m.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		errs = append(errs, m.srv.Shutdown(ctx))
		cancel()
	}
	if m.opsSrv != nil {
		// A profile in progress is cut short: nobody waits for one.
		errs = append(errs, m.opsSrv.Close())
	}
	if m.writerStop != nil {
		m.writerStop()
		m.writerDone.Wait()
	}
	if m.engine != nil && m.db != nil && m.queue != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		if err := m.engine.Drain(ctx); err != nil {
			errs = append(errs, fmt.Errorf("drain: %w", err))
		}
		cancel()
		if m.api != nil {
			// Shutdown leaves hijacked connections alone: the WebSockets
			// close here, once the drained results were pushed to them.
			errs = append(errs, m.api.Close())
		}
		m.engine.Close()
	}
	if m.srv == nil && m.ln != nil {
		errs = append(errs, m.ln.Close()) // Run failed before serving on it
	}
	if m.sandbox != nil {
		// Notifications in flight are abandoned and resent at the next start.
		errs = append(errs, m.sandbox.Close())
	}
	if m.queue != nil {
		errs = append(errs, m.queue.Close())
	}
	if m.db != nil {
		errs = append(errs, m.db.Close())
	}
	errs = append(errs, m.shared.close())
	return errors.Join(errs...)
}

// privateDataDir creates the data directory readable by this user only
// (0700), or makes an existing one so, whatever the umask: it holds the
// database (phones, password and token hashes), the queue's messages and
// the path secret. Files an older version left behind are made private
// too: the secret (0600) and the embedded NATS store (directories 0700,
// files 0600; NATS creates its later files 0640, under these directories).
// The SQLite files are sqldb's business.
func privateDataDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return err
	}
	if err := os.Chmod(filepath.Join(dir, "secret"), 0o600); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	err := filepath.WalkDir(filepath.Join(dir, "nats"), func(p string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
			return err
		case d.Type()&fs.ModeSymlink != 0:
			return nil // not ours to change
		case d.IsDir():
			return os.Chmod(p, 0o700)
		}
		return os.Chmod(p, 0o600)
	})
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// answering is nil if every backend's ping succeeded, else busy naming
// those that failed, for /readyz (it answered "internal error" while a
// database was unreachable), with their errors joined for the log.
func answering(pings map[string]error) error {
	var down []string
	var errs []error
	for name, err := range pings {
		if err != nil {
			down = append(down, name)
			errs = append(errs, err)
		}
	}
	if len(down) == 0 {
		return nil
	}
	slices.Sort(down)
	return errors.Join(seckill.Errorf(seckill.EBusy, "%s not answering", strings.Join(down, ", ")), errors.Join(errs...))
}

// tokenKey is the key that signs session tokens (account.Config.TokenKey),
// derived from the path secret, which every instance shares.
func tokenKey(secret []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("seckill session tokens"))
	return m.Sum(nil)
}

// dataSecret reads the path secret kept in the data directory, creating it
// on first start so paths stay valid across restarts.
func dataSecret(dir string) ([]byte, error) {
	p := filepath.Join(dir, "secret")
	b, err := os.ReadFile(p)
	if err == nil && len(b) >= 32 {
		return b, nil
	}
	if err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("secret: %w", err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, err
	}
	b = []byte(hex.EncodeToString(raw))
	if err := os.WriteFile(p, b, 0o600); err != nil {
		return nil, fmt.Errorf("secret: %w", err)
	}
	return b, nil
}

// testClock is the instance's clock: the wall clock, shifted by
// SECKILL_TEST_CLOCK_OFFSET (a Go duration) when the fault drills set it to
// run instances whose clocks disagree; time.Now otherwise.
func testClock(log *slog.Logger) func() time.Time {
	off, err := time.ParseDuration(os.Getenv("SECKILL_TEST_CLOCK_OFFSET"))
	if err != nil || off == 0 {
		return time.Now
	}
	log.Warn("test hook: the engine's clock is shifted", "offset", off)
	return func() time.Time { return time.Now().Add(off) }
}

// recoverPatience is how long start-up retries a recovery that a shared
// backend answered busy (NATS restarting, Redis failing over) before it
// gives up and the process exits for its supervisor.
const recoverPatience = time.Minute

// retryBusy runs f until it succeeds, fails with anything but EBusy, or
// has failed busy for longer than patience, waiting 1 s, then 2, up to 5
// between tries. It returns f's last error, or ctx's.
func retryBusy(ctx context.Context, log *slog.Logger, patience time.Duration, f func(context.Context) error) error {
	return retryWhile(ctx, log, "recovery", patience, func(err error) bool { return seckill.ErrorCode(err) == seckill.EBusy }, f)
}

// retryUnreachable is retryBusy for opening a backend at start-up: it
// tries again, for up to recoverPatience, while the error says the
// backend could not be reached (busy, a refused or cut connection, a dial
// that timed out; mq says busy when no NATS server answers); a wrong URL,
// a refused password, a missing directory or a newer schema end it at
// once.
func retryUnreachable(ctx context.Context, log *slog.Logger, what string, f func(context.Context) error) error {
	return retryWhile(ctx, log, what, recoverPatience, unreachable, f)
}

// unreachable reports whether err says a backend could not be reached,
// rather than that it answered no.
func unreachable(err error) bool {
	var (
		oe *net.OpError
		de *net.DNSError
	)
	return seckill.ErrorCode(err) == seckill.EBusy || errors.As(err, &oe) || errors.As(err, &de) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, context.DeadlineExceeded)
}

// retryWhile runs f until it succeeds, fails with an error transient
// does not accept, or has failed for longer than patience, waiting 1 s,
// then 2, up to 5 between tries. It returns f's last error, or ctx's.
func retryWhile(ctx context.Context, log *slog.Logger, what string, patience time.Duration, transient func(error) bool, f func(context.Context) error) error {
	giveUp := time.Now().Add(patience)
	wait := time.Second
	for {
		err := f(ctx)
		if err == nil || !transient(err) || time.Now().Add(wait).After(giveUp) {
			return err
		}
		log.Warn(what+" met a backend it cannot reach or that is busy; trying again", "in", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return errors.Join(err, ctx.Err())
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// wsPerAddress is httpapi.WSConfig.MaxPerAddress for --ws-per-address n:
// 0 (no limit) is -1 there, where 0 takes the default.
func wsPerAddress(n int) int {
	if n <= 0 {
		return -1
	}
	return n
}

// weakAdminPassword reports whether password is the README's example, or
// short: fine on a laptop, known to anyone once the shop is reachable
// (found by review: the README's one-liner starts an admin whose password
// is on the page).
func weakAdminPassword(password string) bool {
	return password == "change-me-please" || utf8.RuneCountInString(password) < 12
}
