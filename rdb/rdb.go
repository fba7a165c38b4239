// Package rdb holds the Redis backends: the stock gate (one Lua script per
// operation), sessions, shared rate limits, captchas and leased locks. Every
// key an operation touches at once shares one hash tag, so the same code runs
// unchanged on a single Redis and on Redis Cluster.
//
// Key layout, under a prefix P chosen per component (it must not contain
// braces, so the hash tag stays the sale's or the key's own):
//
//	P{sale:ID}:stock    string  units left; absent = the sale is not loaded
//	P{sale:ID}:buyers   set     user ids holding (or having held) a unit
//	P{sale:ID}:resv     hash    user id → "unixnano ticket": unsettled reservations (server TIME)
//	P{sale:ID}:claim    string  "token run_id master_replid" of the Load that may install the sale; expires
//	P{sale:ID}:epoch    string  "run_id master_replid" of the server the sale was loaded on (see Gate)
//	P{session:GG}:HEX   hash    u (user id), r (role), e (expiry, unix ms), s (epoch written in); expires at e
//	P{session:GG}:epoch string  "run_id master_replid" of the server holding the group GG (first byte of HEX; see Sessions)
//	Psessions:revoked   channel token hashes of deleted sessions (Sessions.FollowRevocations)
//	Prl:KEY             hash    t (tokens), ts (last refill, µs of the server clock)
//	Pcaptcha:ID         string  JSON of the captcha; expires with it
//	Plock:NAME          string  random token of the holder; expires with the lease
package rdb

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"seckill"
	"seckill/internal/redact"
)

// Client is a connection pool to one Redis node or to a Redis Cluster. The
// components of this package share it; it is safe for concurrent use.
type Client struct {
	rdb     redis.UniversalClient // every command goes here: base, or its auto-pipeliner
	base    redis.UniversalClient // *redis.Client or *redis.ClusterClient
	cluster bool

	// Identity of the servers behind the connections (see onConnect).
	mu       sync.Mutex
	servers  map[string]*serverCheck // "run_id master_replid" → its check by the watchers
	watchers []func(ctx context.Context, cn *redis.Conn) error
	gen      atomic.Uint64 // bumped whenever a connection reaches a server not seen before
}

// serverCheck is the watchers' check of one server: done is closed once it
// finished, err says how.
type serverCheck struct {
	done chan struct{}
	err  error
}

// Open connects to Redis and checks that it answers. url is one of
//
//	redis://[user:password@]host:port[/db][?options]    one node
//	rediss://…                                           one node over TLS
//	redis://[user:password@]h1:p1,h2:p2,h3:p3[?options] a Redis Cluster (seed nodes)
//	redis-cluster://[user:password@]host:port[,…]       a Redis Cluster, even with one seed
//	rediss-cluster://…                                   the same over TLS
//
// options are go-redis's URL options (pool_size, dial_timeout, …), plus
// autopipeline, on unless autopipeline=false: concurrent commands share
// pipelines (go-redis's AutoPipeliner, marked experimental upstream), each
// script staying atomic. It is on by default because it won in the
// production-mode benchmark on both crowd shapes (BENCHMARKS.md, run M). A
// cluster has no databases: a path other than empty or /0 is refused.
func Open(ctx context.Context, url string) (*Client, error) {
	c, err := newClient(url)
	if err != nil {
		return nil, err
	}
	if err := c.Ping(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func newClient(rawURL string) (*Client, error) {
	rawURL, autoPipeline, err := cutAutoPipeline(rawURL)
	if err != nil {
		return nil, err
	}
	single, cluster, err := parseURL(rawURL)
	if err != nil {
		return nil, err
	}
	c := &Client{servers: make(map[string]*serverCheck)}
	if cluster != nil {
		cluster.OnConnect = c.onConnect
		if cluster.ClusterStateReloadInterval == 0 {
			// go-redis reloads the slot map on MOVED and ASK, not when a
			// master stops answering: commands went on dialling a dead
			// master (and failing) until the next periodic reload, 60 s by
			// default, after its replica had taken over
			// (TestMasterDiesReplicaTakesOver). A reload is one CLUSTER
			// SLOTS, done at most this often and only while commands flow.
			cluster.ClusterStateReloadInterval = clusterReload
		}
		c.base, c.cluster = redis.NewClusterClient(cluster), true
	} else {
		single.OnConnect = c.onConnect
		c.base = redis.NewClient(single)
	}
	c.rdb = c.base
	if autoPipeline {
		ap, err := c.base.AutoPipeline()
		if err != nil {
			c.base.Close()
			return nil, fmt.Errorf("rdb: autopipeline: %w", err)
		}
		c.rdb = ap
	}
	return c, nil
}

// onConnect runs on every new connection before it carries a command. It
// asks the server its run_id, which changes whenever the server restarts
// (perhaps from an older RDB snapshot or AOF) and differs on a replica
// promoted in a failover, and its replication ID, which changes when a
// server is promoted (a failover back to a master seen before, which
// followed another meanwhile, keeps its run_id): the server may hold older
// data than the last one this client talked to. On a server not seen
// before (by both) it bumps the
// generation and runs every watcher over this very connection (gates drop
// the sales that were not loaded on this server); a connection to a server
// whose check is still running waits for it, so no command reaches a
// server before its data was checked. A failed check fails the connection
// and is tried again by the next one.
func (c *Client) onConnect(ctx context.Context, cn *redis.Conn) error {
	// Two sections, two commands: INFO with several sections needs Redis 7.
	cmds, err := cn.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Info(ctx, "server")
		p.Info(ctx, "replication")
		return nil
	})
	if err != nil {
		return err
	}
	id := runID(cmds[0].(*redis.StringCmd).Val())
	if id == "" {
		return fmt.Errorf("rdb: INFO server carries no run_id")
	}
	// A server keeps its run_id through a failover that demotes it and
	// one that promotes it again, while its data then is a copy of
	// another master's, perhaps behind what this client saw there: the
	// replication ID, which every promotion renews, tells that history
	// apart.
	id += " " + infoField(cmds[1].(*redis.StringCmd).Val(), "master_replid")
	c.mu.Lock()
	if chk, ok := c.servers[id]; ok {
		c.mu.Unlock()
		select {
		case <-chk.done:
			return chk.err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	chk := &serverCheck{done: make(chan struct{})}
	c.servers[id] = chk
	c.gen.Add(1)
	watchers := slices.Clone(c.watchers)
	c.mu.Unlock()

	for _, w := range watchers {
		if chk.err = w(ctx, cn); chk.err != nil {
			break
		}
	}
	if chk.err != nil {
		c.mu.Lock()
		delete(c.servers, id)
		c.mu.Unlock()
	}
	close(chk.done)
	return chk.err
}

// watch registers fn to run on a connection to a server not seen before
// (see onConnect); fn must use only cn.
func (c *Client) watch(fn func(ctx context.Context, cn *redis.Conn) error) {
	c.mu.Lock()
	c.watchers = append(c.watchers, fn)
	c.mu.Unlock()
}

// runID finds run_id in the text of INFO server.
func runID(info string) string { return infoField(info, "run_id") }

// infoField finds the field name in the text of an INFO section.
func infoField(info, name string) string {
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return ""
}

// clusterReload bounds how long a Cluster client works from a slot map
// without asking for it again (see newClient).
const clusterReload = time.Second

// autoPipelineDefault is the autopipeline option of a URL without one.
const autoPipelineDefault = true

// cutAutoPipeline removes the autopipeline option from the URL's query and
// says whether it is on (autoPipelineDefault when absent).
func cutAutoPipeline(rawURL string) (string, bool, error) {
	base, query, ok := strings.Cut(rawURL, "?")
	if !ok {
		return rawURL, autoPipelineDefault, nil
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return "", false, fmt.Errorf("rdb: bad redis URL %q: %v", redact.URL(rawURL), err)
	}
	v, ok := q["autopipeline"]
	if !ok {
		return rawURL, autoPipelineDefault, nil
	}
	on, err := strconv.ParseBool(v[len(v)-1])
	if err != nil {
		return "", false, fmt.Errorf("rdb: bad redis URL %q: autopipeline=%q", redact.URL(rawURL), v[len(v)-1])
	}
	q.Del("autopipeline")
	if len(q) > 0 {
		base += "?" + q.Encode()
	}
	return base, on, nil
}

// parseURL turns one of Open's URL forms into the options of a single-node
// or of a cluster client (exactly one is non-nil).
func parseURL(rawURL string) (*redis.Options, *redis.ClusterOptions, error) {
	bad := func(why string) error {
		return fmt.Errorf("rdb: bad redis URL %q: %s", redact.URL(rawURL), why)
	}
	scheme, rest, ok := strings.Cut(rawURL, "://")
	if !ok {
		return nil, nil, bad("want redis://, rediss:// or redis-cluster://")
	}
	forceCluster := false
	switch scheme {
	case "redis", "rediss":
	case "redis-cluster", "rediss-cluster":
		scheme = strings.TrimSuffix(scheme, "-cluster")
		forceCluster = true
	default:
		return nil, nil, bad("want redis://, rediss:// or redis-cluster://")
	}
	// The authority ends at the path, query or fragment; a comma-separated
	// host list is not something net/url parses, so split it off by hand.
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	authority, tail := rest[:end], rest[end:]
	userinfo, hostlist := "", authority
	if i := strings.LastIndex(authority, "@"); i >= 0 {
		userinfo, hostlist = authority[:i+1], authority[i+1:]
	}
	var hosts []string
	for h := range strings.SplitSeq(hostlist, ",") {
		if h = strings.TrimSpace(h); h == "" {
			return nil, nil, bad("empty host")
		}
		hosts = append(hosts, h)
	}
	first := scheme + "://" + userinfo + hosts[0] + tail

	if !forceCluster && len(hosts) == 1 {
		opt, err := redis.ParseURL(first)
		if err != nil {
			return nil, nil, bad(err.Error())
		}
		return opt, nil, nil
	}

	u, err := url.Parse(first)
	if err != nil {
		return nil, nil, bad(err.Error())
	}
	if p := strings.Trim(u.Path, "/"); p != "" && p != "0" {
		return nil, nil, bad("a cluster has only database 0")
	}
	u.Path = ""
	q := u.Query()
	for _, h := range hosts[1:] {
		q.Add("addr", h)
	}
	u.RawQuery = q.Encode()
	opt, err := redis.ParseClusterURL(u.String())
	if err != nil {
		return nil, nil, bad(err.Error())
	}
	return nil, opt, nil
}

// Close closes the connections.
func (c *Client) Close() error {
	if c.rdb != c.base {
		c.rdb.Close()
	}
	return c.base.Close()
}

// Ping checks that Redis answers; on a cluster, that every master does.
func (c *Client) Ping(ctx context.Context) error {
	if cc, ok := c.base.(*redis.ClusterClient); ok {
		err := cc.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
			return n.Ping(ctx).Err()
		})
		if err != nil {
			return redisErr("ping", err)
		}
		return nil
	}
	if err := c.base.Ping(ctx).Err(); err != nil {
		return redisErr("ping", err)
	}
	return nil
}

// Cluster reports whether the client talks to a Redis Cluster.
func (c *Client) Cluster() bool { return c.cluster }

// Redis returns the underlying go-redis client (a *redis.Client or a
// *redis.ClusterClient), for tools and fault drills.
func (c *Client) Redis() redis.UniversalClient { return c.base }

// EvictingNodes lists the nodes holding data (the one node, or every
// master of a cluster) whose maxmemory-policy is not noeviction, with
// their policy: the gate's keys are state, and an evicted one loses
// buyers or units (RELIABILITY.md, "A Redis that evicts keys"). An error
// when the policy cannot be read (a managed service may refuse CONFIG).
func (c *Client) EvictingNodes(ctx context.Context) ([]string, error) {
	var (
		mu   sync.Mutex
		evil []string
	)
	err := c.forEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
		v, err := n.ConfigGet(ctx, "maxmemory-policy").Result()
		if err != nil {
			return err
		}
		if p := v["maxmemory-policy"]; p != "noeviction" {
			mu.Lock()
			evil = append(evil, n.Options().Addr+" "+p)
			mu.Unlock()
		}
		return nil
	})
	return evil, err
}

// forEachMaster calls fn with a client of every node holding data: the one
// node, or every master of the cluster.
func (c *Client) forEachMaster(ctx context.Context, fn func(ctx context.Context, n *redis.Client) error) error {
	switch r := c.base.(type) {
	case *redis.ClusterClient:
		return r.ForEachMaster(ctx, fn)
	case *redis.Client:
		return fn(ctx, r)
	}
	return fmt.Errorf("rdb: unsupported client %T", c.base)
}

// deleteMatching removes every key starting with prefix, on every master,
// scanning (not KEYS) so the server keeps serving meanwhile. It is for tests
// and tools: keys written while it runs may survive it.
func (c *Client) deleteMatching(ctx context.Context, prefix string) error {
	pattern := globEscape(prefix) + "*"
	return c.forEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
		var cursor uint64
		for {
			keys, next, err := n.Scan(ctx, cursor, pattern, 1000).Result()
			if err != nil {
				return err
			}
			if len(keys) > 0 {
				// One key per UNLINK: on a cluster the keys of one node
				// lie in many slots, and a multi-key command must not
				// cross slots.
				_, err := n.Pipelined(ctx, func(p redis.Pipeliner) error {
					for _, k := range keys {
						p.Unlink(ctx, k)
					}
					return nil
				})
				if err != nil {
					return err
				}
			}
			if cursor = next; cursor == 0 {
				return nil
			}
		}
	})
}

func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

func checkPrefix(prefix string) {
	if strings.ContainsAny(prefix, "{}") {
		// A brace in the prefix would become the hash tag and put every
		// key of the component in one slot (or split a sale's keys).
		panic(fmt.Sprintf("rdb: key prefix %q must not contain braces", prefix))
	}
}

// errUnavailable is the application error behind every failure to reach
// Redis: the HTTP layer answers it with 503, and the client may retry.
var errUnavailable = &seckill.Error{Code: seckill.EBusy, Message: "redis unavailable, retry later"}

// unavailableError keeps the cause of an unreachable Redis while carrying
// the EBusy application error for seckill.ErrorCode.
type unavailableError struct {
	op  string
	err error
}

func (e *unavailableError) Error() string   { return "rdb " + e.op + ": " + e.err.Error() }
func (e *unavailableError) Unwrap() []error { return []error{errUnavailable, e.err} }

// redisErr wraps an error of a Redis call. Network failures, timeouts and
// the server's own "not now" replies (LOADING, CLUSTERDOWN, TRYAGAIN,
// MASTERDOWN, BUSY) become EBusy; other error replies are internal. So do
// the writes refused by a server demoted under open connections (READONLY:
// REPLICAOF or FAILOVER on a single Redis, TestDemotedServerIsBusy), and
// the redirections of a Cluster (MOVED, ASK) that outlast the client's own
// redirects: a failover or a migration of the key's slot is under way, and
// the command did not run (TestRedisClusterFaults saw 500s for them).
func redisErr(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("rdb %s: %w", op, err)
	}
	var rerr redis.Error
	if errors.As(err, &rerr) {
		msg := rerr.Error()
		for _, p := range []string{"LOADING", "CLUSTERDOWN", "TRYAGAIN", "MASTERDOWN", "BUSY", "READONLY", "MOVED ", "ASK "} {
			if strings.HasPrefix(msg, p) {
				return &unavailableError{op: op, err: err}
			}
		}
		return fmt.Errorf("rdb %s: %w", op, err)
	}
	return &unavailableError{op: op, err: err}
}
