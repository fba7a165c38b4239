// Package mq is the order queue and the result fan-out of seckill on NATS
// JetStream: a durable work queue between the stock gate and the order
// writer (seckill.OrderQueue), and core NATS pub/sub that carries order
// results to every instance (seckill.ResultBus) and the instances'
// dashboard counts to each other (PublishDash, SubscribeDash).
//
// With an empty Config.URL, Open starts a NATS server with JetStream inside
// the process (file storage under Config.DataDir, no TCP listener) and
// connects to it in-process: zero setup for one machine. With a URL it
// connects to an external NATS JetStream server or cluster shared by several
// instances.
//
// Layout on the server, for the default prefix "SECKILL":
//
//	stream   SECKILL_ORDERS   subjects seckill.orders.<saleID>.<n>, WorkQueue
//	                          retention, file storage; a message holds n
//	                          requests of the sale, published together
//	consumer writer           durable pull consumer, explicit ack
//	subject  seckill.results  core NATS, []seckill.OrderResult as JSON
//	subject  seckill.dash     core NATS, an instance's dashboard counts
//	                          (opaque here; see httpapi.DashBus)
//
// WorkQueue retention removes a message once it is acked, so the stream's
// message counts per subject, times the n of each, are the requests still
// pending.
package mq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"seckill"
)

var (
	_ seckill.OrderQueue    = (*Queue)(nil)
	_ seckill.ResultBus     = (*Queue)(nil)
	_ seckill.BatchAcker    = (*Queue)(nil)
	_ seckill.QueueRepairer = (*Queue)(nil)
)

// Defaults of Config.
const (
	DefaultPrefix   = "SECKILL"
	DefaultAckWait  = 30 * time.Second
	DefaultMaxBytes = 1 << 30
	DefaultMaxMsgs  = 10_000_000
	DefaultMaxBatch = 256

	consumerName  = "writer"
	maxAckPending = 100_000
)

// Config configures Open. The zero value (plus a DataDir) runs an embedded
// server with the defaults.
type Config struct {
	// URL of an external NATS server, "nats://host:port", several separated
	// by commas. Empty: run an embedded server.
	URL string
	// DataDir is where the embedded server keeps its JetStream files (in
	// DataDir/nats). Required when URL is empty; one process per DataDir.
	DataDir string
	// Logger receives connection and server events; nil discards them.
	Logger *slog.Logger

	// Prefix names what this queue creates on the server: stream
	// <PREFIX>_ORDERS, subjects <prefix>.orders.<saleID>, <prefix>.results
	// and <prefix>.dash. Letters, digits, '_' and '-'; default "SECKILL".
	// Instances that share a queue must use the same prefix.
	Prefix string
	// MaxBatch is the most requests one message carries (see Publish);
	// default 256.
	MaxBatch int
	// AckWait is how long a fetched message may stay unacked before it is
	// delivered again; default 30 seconds.
	AckWait time.Duration
	// MaxBytes and MaxMsgs bound the stream (MaxMsgs counts messages, each
	// of one or more requests); once full, Publish fails with EBusy
	// (nothing accepted is ever discarded). Defaults 1 GiB and 10M.
	MaxBytes int64
	MaxMsgs  int64
	// Replicas of the stream on an external cluster; default 1.
	Replicas int
	// SyncAlways makes the embedded server fsync every write, so an
	// acknowledged publish also survives a power loss, not only a crash of
	// the process. Slower; off by default.
	SyncAlways bool
}

var prefixRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func (c *Config) setDefaults() error {
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if !prefixRE.MatchString(c.Prefix) {
		return seckill.Errorf(seckill.EInvalid, "mq: prefix %q: want letters, digits, '_' or '-'", c.Prefix)
	}
	if c.URL == "" && c.DataDir == "" {
		return seckill.Errorf(seckill.EInvalid, "mq: embedded server needs a data dir")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = DefaultMaxBatch
	}
	if c.AckWait <= 0 {
		c.AckWait = DefaultAckWait
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.MaxMsgs <= 0 {
		c.MaxMsgs = DefaultMaxMsgs
	}
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	return nil
}

// Queue is the order queue and result bus on one NATS connection. Its
// methods are safe for concurrent use.
type Queue struct {
	cfg     Config
	log     *slog.Logger
	srv     *server.Server // nil with an external server
	nc      *nats.Conn
	closed  chan struct{} // closed by the connection's closed handler
	js      jetstream.JetStream
	stream  jetstream.Stream
	cons    jetstream.Consumer
	subjPfx string // "<prefix>.orders."
	results string // "<prefix>.results"
	dash    string // "<prefix>.dash"

	mu          sync.Mutex
	outstanding map[*message]struct{} // fetched, not yet acked or nacked
	spill       []*delivery           // fetched beyond a Fetch's max, for the next
	avgReqs     float64               // requests per message lately, to size pulls
	closing     bool

	pmu         sync.Mutex           // publishing
	psales      map[int64]*saleQueue // sales with messages on their way
	pclosed     bool
	maxInFlight int // messages per sale on their way at once (the const; tests lower it)
	pubs        pubHealth

	gmu    sync.Mutex
	gapSeq int
	gaps   map[int]func() // SubscribeRequests' gap callbacks (results.go)
}

// Open connects to the queue, starting the embedded server when cfg.URL is
// empty, and creates or updates the stream and the writer consumer. Several
// processes may open the same external queue at once. It fails with EInvalid
// for a bad Config and EBusy when the server cannot be reached or set up.
func Open(ctx context.Context, cfg Config) (*Queue, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	lower := strings.ToLower(cfg.Prefix)
	q := &Queue{
		cfg:         cfg,
		log:         cfg.Logger.With("component", "mq"),
		closed:      make(chan struct{}),
		subjPfx:     lower + ".orders.",
		results:     lower + ".results",
		dash:        lower + ".dash",
		outstanding: make(map[*message]struct{}),
		avgReqs:     1,
		psales:      make(map[int64]*saleQueue),
		maxInFlight: maxInFlight,
	}
	if err := q.open(ctx); err != nil {
		q.shutdown()
		return nil, fmt.Errorf("mq open: %w", busy(err))
	}
	return q, nil
}

func (q *Queue) open(ctx context.Context) error {
	opts := []nats.Option{
		nats.Name("seckill"),
		nats.ClosedHandler(func(*nats.Conn) { close(q.closed) }),
		nats.DrainTimeout(10 * time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				q.log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			q.log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted())
			// Publishes that failed while the connection was down say
			// nothing of the server now (Ping said disconnected then).
			q.pubs.record(nil, time.Now())
			// The server may have restarted after a crash: mend what it
			// brought back before the writers rely on it.
			go q.repairAfterReconnect()
			// Core messages sent meanwhile were not kept for us.
			go q.noteGap()
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			q.log.Error("nats async error", "subject", subj, "err", err)
			if errors.Is(err, nats.ErrSlowConsumer) {
				go q.noteGap() // messages of a subscription were dropped
			}
		}),
	}
	url := q.cfg.URL
	if url == "" {
		srv, err := startEmbedded(q.cfg, q.log)
		if err != nil {
			return err
		}
		q.srv = srv
		// Its failed writes do not pass with time: a store that latched a
		// write error fails every publish until the process restarts.
		q.pubs.sticky = true
		opts = append(opts, nats.InProcessServer(srv))
	} else {
		// No reconnect buffer: a publish while disconnected fails at once
		// instead of reaching the server later, after its caller gave up
		// and released the reservation.
		opts = append(opts, nats.MaxReconnects(-1), nats.ReconnectWait(500*time.Millisecond),
			nats.ReconnectBufSize(-1))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	q.nc = nc
	if q.js, err = jetstream.New(nc); err != nil {
		return err
	}
	if err := q.setup(ctx); err != nil {
		return err
	}
	if q.srv != nil {
		// Embedded: this process owns the data dir, so every message still
		// awaiting an ack was fetched by a previous run that died. Deliver
		// them again now instead of after AckWait.
		if _, err := q.stream.ResetConsumer(ctx, consumerName); err != nil {
			return fmt.Errorf("reset consumer: %w", err)
		}
	}
	return q.Repair(ctx)
}

// leaderless reports whether si, the info of a replicated stream, came
// from a member while the stream had no leader: then it is that member's
// own copy, which may be behind.
func leaderless(si *jetstream.StreamInfo) bool {
	return si.Cluster != nil && si.Cluster.Leader == "" && si.Config.Replicas > 1
}

// setup creates or updates the stream and the consumer. Concurrent callers
// with equal configs all succeed; a lost race on create is retried. A
// stream that exists with more replicas than Config.Replicas keeps them:
// the instances share it, and one started without --nats-replicas turned
// a three-replica stream into one (found by review), which a single lost
// disk then emptied of accepted purchases.
func (q *Queue) setup(ctx context.Context) error {
	scfg := jetstream.StreamConfig{
		Name:        q.StreamName(),
		Description: "seckill order requests",
		Subjects:    []string{q.subjPfx + ">"},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    q.cfg.Replicas,
		Discard:     jetstream.DiscardNew,
		MaxBytes:    q.cfg.MaxBytes,
		MaxMsgs:     q.cfg.MaxMsgs,
		MaxMsgSize:  64 << 10,
		// No AllowDirect: direct gets may be served by a lagging replica,
		// and PendingRequests must see what the leader holds.
	}
	ccfg := q.consumerConfig()
	var err error
	for attempt := 0; ; attempt++ {
		if old, err := q.js.Stream(ctx, scfg.Name); err == nil {
			if n := old.CachedInfo().Config.Replicas; n > scfg.Replicas {
				q.log.Warn("the order stream keeps the replicas it has; give every instance the same --nats-replicas",
					"stream", scfg.Name, "replicas", n, "asked", scfg.Replicas)
				scfg.Replicas = n
			}
		}
		if q.stream, err = q.js.CreateOrUpdateStream(ctx, scfg); err == nil {
			if q.cons, err = q.stream.CreateOrUpdateConsumer(ctx, ccfg); err == nil {
				return nil
			}
		}
		if attempt == 4 || ctx.Err() != nil {
			return fmt.Errorf("create stream %s: %w", scfg.Name, err)
		}
		// Another process may have created it between our update and
		// create; the next CreateOrUpdate updates it.
		q.log.Debug("stream setup retry", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(50*(attempt+1)) * time.Millisecond):
		}
	}
}

// consumerConfig is the writer consumer: every message of the stream,
// acked one by one, delivered again after AckWait until acked.
func (q *Queue) consumerConfig() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       consumerName,
		Description:   "seckill order writer",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       q.cfg.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: maxAckPending,
		Replicas:      0, // as the stream
	}
}

// startEmbedded runs a JetStream server in this process with its files in
// DataDir/nats and no network listener.
func startEmbedded(cfg Config, log *slog.Logger) (*server.Server, error) {
	opts := &server.Options{
		ServerName:         "seckill",
		DontListen:         true,
		NoSigs:             true,
		JetStream:          true,
		StoreDir:           filepath.Join(cfg.DataDir, "nats"),
		JetStreamMaxMemory: 64 << 20, // we use file storage only
		SyncAlways:         cfg.SyncAlways,
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	srv.SetLoggerV2(serverLogger{log.With("component", "nats-server")}, false, false, false)
	srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, errors.New("embedded nats: not ready after 30s")
	}
	return srv, nil
}

// StreamName returns the name of the order stream.
func (q *Queue) StreamName() string { return strings.ToUpper(q.cfg.Prefix) + "_ORDERS" }

// Subject returns the subject of a message holding one request of a sale.
func (q *Queue) Subject(saleID int64) string { return q.batchSubject(saleID, 1) }

// Ping reports whether the connection is up and the stream answers; EBusy
// otherwise.
func (q *Queue) Ping(ctx context.Context) error {
	if !q.nc.IsConnected() {
		return fmt.Errorf("mq ping: %w", seckill.Errorf(seckill.EBusy, "order queue disconnected"))
	}
	si, err := q.stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("mq ping: %w", busy(err))
	}
	if leaderless(si) {
		// Any member answers the info of a stream that lost its quorum,
		// from its own copy, while every publish fails (found by review:
		// three instances said ready through a quorum loss).
		return fmt.Errorf("mq ping: %w", seckill.Errorf(seckill.EBusy, "the order stream has no leader (its cluster lost its quorum)"))
	}
	if err := q.pubs.failing(time.Now()); err != nil {
		return fmt.Errorf("mq ping: %w", seckill.Errorf(seckill.EBusy, "%v", err))
	}
	return nil
}

// Close naks the deliveries still outstanding (so they are redelivered at
// once, not after AckWait), drains the connection, then shuts down the
// embedded server and waits for it. Stop fetching and acking before Close;
// calls made after it fail with EBusy. Close is safe to call twice.
func (q *Queue) Close() error {
	q.mu.Lock()
	if q.closing {
		q.mu.Unlock()
		return nil
	}
	q.closing = true
	left := q.outstanding
	q.outstanding, q.spill = nil, nil
	q.mu.Unlock()
	q.pmu.Lock()
	q.pclosed = true
	q.pmu.Unlock()

	var errs []error
	for m := range left {
		if err := m.msg.Nak(); err != nil {
			errs = append(errs, fmt.Errorf("nak on close: %w", err))
			break
		}
	}
	if len(left) > 0 {
		q.log.Info("returned unacked deliveries on close", "n", len(left))
	}
	errs = append(errs, q.shutdown())
	return errors.Join(errs...)
}

// shutdown drains and closes the connection and stops the embedded server.
func (q *Queue) shutdown() error {
	var err error
	if q.nc != nil {
		if err = q.nc.Drain(); err != nil {
			q.nc.Close()
		}
		<-q.closed
		if err != nil {
			err = fmt.Errorf("mq drain: %w", err)
		}
	}
	if q.srv != nil {
		q.srv.Shutdown()
		q.srv.WaitForShutdown()
	}
	return err
}

var errClosed = errors.New("queue closed")

// busy wraps err as EBusy unless it already carries an application code.
func busy(err error) error {
	var e *seckill.Error
	if errors.As(err, &e) {
		return err
	}
	return fmt.Errorf("%w: %w", seckill.Errorf(seckill.EBusy, "order queue unavailable"), err)
}

// serverLogger sends the embedded server's log to slog. Its notices (the
// startup banner among them) go to debug.
type serverLogger struct{ l *slog.Logger }

func (s serverLogger) Noticef(f string, v ...any) { s.l.Debug(fmt.Sprintf(f, v...)) }
func (s serverLogger) Warnf(f string, v ...any)   { s.l.Warn(fmt.Sprintf(f, v...)) }
func (s serverLogger) Fatalf(f string, v ...any)  { s.l.Error(fmt.Sprintf(f, v...)) }
func (s serverLogger) Errorf(f string, v ...any)  { s.l.Error(fmt.Sprintf(f, v...)) }
func (s serverLogger) Debugf(f string, v ...any)  { s.l.Debug(fmt.Sprintf(f, v...)) }
func (s serverLogger) Tracef(f string, v ...any)  { s.l.Debug(fmt.Sprintf(f, v...)) }
