package metrics

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"seckill"
)

// cached runs read at most once per ttl, however many scrapes ask: the
// readings below cost a round trip to the queue or to SQL.
type cached[T any] struct {
	ttl, timeout time.Duration
	read         func(ctx context.Context) (T, error)

	mu   sync.Mutex
	at   time.Time
	val  T
	err  error
	have bool
}

func (c *cached[T]) get() (T, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.have && time.Since(c.at) < c.ttl {
		return c.val, c.err
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	c.val, c.err = c.read(ctx)
	c.at, c.have = time.Now(), true
	return c.val, c.err
}

// queueCollector reports the order queue's depth and, when the queue can
// tell, its lag: the age of the oldest request not yet written.
type queueCollector struct {
	depth, lag, up *prometheus.Desc
	state          cached[queueState]
	aged           bool
}

type queueState struct {
	pending int64
	lag     time.Duration
}

func newQueueCollector(opt Options) *queueCollector {
	ager, aged := opt.Queue.(QueueAger)
	c := &queueCollector{
		depth: prometheus.NewDesc("seckill_queue_pending", "Accepted purchases stored in the order queue and not yet written to SQL, all sales.", nil, nil),
		lag:   prometheus.NewDesc("seckill_queue_lag_seconds", "Age of the oldest purchase still in the order queue (0 when empty).", nil, nil),
		up:    prometheus.NewDesc("seckill_queue_up", "1 if the last reading of the order queue succeeded.", nil, nil),
		aged:  aged,
	}
	c.state = cached[queueState]{ttl: opt.CacheTTL, timeout: opt.Timeout, read: func(ctx context.Context) (queueState, error) {
		var st queueState
		n, err := opt.Queue.Pending(ctx, 0)
		if err != nil {
			return st, err
		}
		st.pending = n
		if aged && n > 0 {
			at, ok, err := ager.OldestPending(ctx)
			if err != nil {
				return st, err
			}
			if ok {
				st.lag = max(opt.Now().Sub(at), 0)
			}
		}
		return st, nil
	}}
	return c
}

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.depth
	ch <- c.up
	if c.aged {
		ch <- c.lag
	}
}

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	st, err := c.state.get()
	if err != nil {
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 1)
	ch <- prometheus.MustNewConstMetric(c.depth, prometheus.GaugeValue, float64(st.pending))
	if c.aged {
		ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, st.lag.Seconds())
	}
}

// ordersCollector counts orders by status across every sale, from SQL.
type ordersCollector struct {
	orders, sales, up *prometheus.Desc
	state             cached[orderCounts]
}

type orderCounts struct {
	sales   int
	byState map[seckill.OrderStatus]int64
}

func newOrdersCollector(opt Options) *ordersCollector {
	c := &ordersCollector{
		orders: prometheus.NewDesc("seckill_orders", "Orders in SQL by status, all sales.", []string{"status"}, nil),
		sales:  prometheus.NewDesc("seckill_sales", "Sales in the catalogue.", nil, nil),
		up:     prometheus.NewDesc("seckill_orders_stats_up", "1 if the last reading of order counts from SQL succeeded.", nil, nil),
	}
	c.state = cached[orderCounts]{ttl: opt.CacheTTL, timeout: opt.Timeout, read: func(ctx context.Context) (orderCounts, error) {
		sales, err := opt.Sales.Sales(ctx)
		if err != nil {
			return orderCounts{}, err
		}
		oc := orderCounts{sales: len(sales), byState: map[seckill.OrderStatus]int64{
			seckill.OrderPending: 0, seckill.OrderPaid: 0, seckill.OrderCancelled: 0, seckill.OrderRefunded: 0,
		}}
		for _, s := range sales {
			st, err := opt.Sales.SaleStats(ctx, s.ID)
			if seckill.ErrorCode(err) == seckill.ENotFound {
				continue
			}
			if err != nil {
				return orderCounts{}, err
			}
			oc.byState[seckill.OrderPending] += st.Pending
			oc.byState[seckill.OrderPaid] += st.Paid
			oc.byState[seckill.OrderCancelled] += st.Cancelled
			oc.byState[seckill.OrderRefunded] += st.Refunded
		}
		return oc, nil
	}}
	return c
}

func (c *ordersCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.orders
	ch <- c.sales
	ch <- c.up
}

func (c *ordersCollector) Collect(ch chan<- prometheus.Metric) {
	oc, err := c.state.get()
	if err != nil {
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 1)
	ch <- prometheus.MustNewConstMetric(c.sales, prometheus.GaugeValue, float64(oc.sales))
	for status, n := range oc.byState {
		ch <- prometheus.MustNewConstMetric(c.orders, prometheus.GaugeValue, float64(n), string(status))
	}
}
