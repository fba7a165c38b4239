package sqldb_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"seckill/internal/testenv"
	"strings"
	"testing"
	"time"

	"seckill"
	"seckill/internal/contract"
	"seckill/sqldb"
)

// freshURL returns the URL of a new, empty database, removed at the end of
// the test. Each engine has one.
type freshURL func(t testing.TB) string

// freshSQLite is a SQLite file in a temp dir.
func freshSQLite(t testing.TB) string {
	return "sqlite:" + filepath.Join(t.TempDir(), "seckill.db")
}

// openFresh opens a fresh database of an engine, closed at the end of the
// test.
func openFresh(t testing.TB, fresh freshURL) *sqldb.DB {
	t.Helper()
	return openAt(t, fresh(t))
}

// testEngine runs the tests every engine must pass: the contract suite
// and those of this package.
func testEngine(t *testing.T, fresh freshURL) {
	t.Run("Stores", func(t *testing.T) { testStores(t, fresh) })
	t.Run("Reopen", func(t *testing.T) { testReopen(t, fresh(t)) })
	t.Run("Times", func(t *testing.T) { testTimes(t, fresh) })
	t.Run("CreateUsers", func(t *testing.T) { testCreateUsers(t, fresh) })
	t.Run("OrderNoCollision", func(t *testing.T) { testOrderNoCollision(t, fresh) })
	t.Run("OneSaleShort", func(t *testing.T) { testOneSaleShort(t, fresh) })
	t.Run("OrderIDs", func(t *testing.T) { testOrderIDs(t, fresh) })
	t.Run("DeadlockRetry", func(t *testing.T) { testDeadlockRetry(t, fresh) })
	t.Run("FenceWaits", func(t *testing.T) { testFenceWaits(t, fresh) })
	t.Run("ManyWriters", func(t *testing.T) { testManyWriters(t, fresh) })
	t.Run("DeleteExpiredSessions", func(t *testing.T) { testDeleteExpiredSessions(t, fresh) })
}

func testStores(t *testing.T, fresh freshURL) {
	contract.TestStores(t, func(t *testing.T) contract.Stores {
		db := openFresh(t, fresh)
		return contract.Stores{Users: db, Sessions: db, Sales: db, Orders: db}
	})
}

func openAt(t testing.TB, url string) *sqldb.DB {
	t.Helper()
	db, err := sqldb.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Error(err)
		}
	})
	return db
}

func TestStoresSQLite(t *testing.T) { testStores(t, freshSQLite) }

func TestOpenURLs(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	for _, url := range []string{
		"sqlite:" + filepath.Join(dir, "a.db"),
		"sqlite://" + filepath.Join(dir, "b.db"),
		"file:" + filepath.Join(dir, "c.db"),
		"file://" + filepath.Join(dir, "d.db"),
	} {
		db, err := sqldb.Open(ctx, url)
		if err != nil {
			t.Errorf("Open(%q): %v", url, err)
			continue
		}
		if err := db.Ping(ctx); err != nil {
			t.Errorf("Ping(%q): %v", url, err)
		}
		if got := db.Engine(); got != "sqlite" {
			t.Errorf("Engine() = %q, want sqlite", got)
		}
		if err := db.Close(); err != nil {
			t.Errorf("Close(%q): %v", url, err)
		}
	}
}

func TestOpenBadURL(t *testing.T) {
	for _, c := range []struct{ url, want string }{
		{"", "unsupported database URL"},
		{"/tmp/x.db", "unsupported database URL"},
		{"redis://localhost:6379", "unsupported database URL"},
		{"postgres://u:secret@127.0.0.1:1/seckill", "open postgres"},
		{"postgresql://u:secret@127.0.0.1:1/seckill?sslmode=disable", "open postgres"},
		{"postgres://u:secret@127.0.0.1:notaport/seckill", "open postgres"},
		{"postgres://u:s%40cret@127.0.0.1:1/seckill", "open postgres"},
		{"mysql://u:secret@127.0.0.1:1/seckill", "open mysql"},
		{"mysql://u:secret@127.0.0.1:3306", "database name"},
		{"mysql://u:secret@127.0.0.1:3306/x?timeout=notatime", "URL parameters"},
		{"mysql:u:secret@tcp(127.0.0.1:3306)/seckill", "malformed URL"},
		{"mysql://u:secret@127.0.0.1:notaport/seckill", "open mysql"},
		{"redis://u:secret@localhost:6379", "unsupported database URL"},
		{"sqlite:", "empty path"},
		{"sqlite::memory:", "in-memory"},
		{"sqlite:/tmp/x.db?_txlock=deferred", "query parameters"},
		{"sqlite:" + filepath.Join(t.TempDir(), "no", "such", "dir", "x.db"), "open sqlite"},
	} {
		db, err := sqldb.Open(context.Background(), c.url)
		if err == nil {
			db.Close()
			t.Errorf("Open(%q) succeeded, want an error containing %q", c.url, c.want)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("Open(%q) = %v, want an error containing %q", c.url, err, c.want)
		}
		if strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "s@cret") {
			t.Errorf("Open(%q) error shows the password: %v", c.url, err)
		}
	}
}

// TestReopen checks that migrations are idempotent and that committed data
// survives closing and reopening the file.
func TestReopen(t *testing.T) { testReopen(t, freshSQLite(t)) }

func testReopen(t *testing.T, url string) {
	ctx := context.Background()
	db, err := sqldb.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	u := &seckill.User{Phone: "13900000000", Nickname: "kim", Role: seckill.RoleBuyer, PasswordHash: "h"}
	mustOK(t, db.CreateUser(ctx, u))
	sale := &seckill.Sale{Name: "s", PriceCents: 1, OriginalPriceCents: 2, Stock: 3,
		StartsAt: time.Now(), EndsAt: time.Now().Add(time.Hour)}
	mustOK(t, db.CreateSale(ctx, sale))
	payBy := time.Now().Add(10 * time.Minute)
	res, err := db.WriteOrders(ctx, []seckill.OrderRequest{{SaleID: sale.ID, UserID: u.ID, Ticket: "T1", PriceCents: 1, At: time.Now()}}, payBy)
	mustOK(t, err)
	mustOK(t, db.Close())

	for range 2 {
		db := openAt(t, url)
		got, err := db.UserByPhone(ctx, u.Phone)
		mustOK(t, err)
		if got.ID != u.ID {
			t.Errorf("after reopen, user %d, want %d", got.ID, u.ID)
		}
		o, err := db.Order(ctx, res[0].OrderID)
		mustOK(t, err)
		if o.OrderNo != "T1" || !o.PayDeadline.Equal(payBy.Truncate(time.Millisecond)) {
			t.Errorf("after reopen, order = %+v", o)
		}
		st, err := db.SaleStats(ctx, sale.ID)
		mustOK(t, err)
		if st.SQLStockLeft != 2 || st.LedgerSum != 2 || st.Orders != 1 {
			t.Errorf("after reopen, stats = %+v", st)
		}
		mustOK(t, db.Close())
	}
}

// TestTimes checks that times come back in UTC at millisecond precision.
func TestTimes(t *testing.T) { testTimes(t, freshSQLite) }

func testTimes(t *testing.T, fresh freshURL) {
	ctx := context.Background()
	db := openFresh(t, fresh)
	shanghai := time.FixedZone("CST", 8*3600)
	start := time.Date(2030, 11, 11, 0, 0, 0, 123_456_789, shanghai)
	sale := &seckill.Sale{Name: "s", PriceCents: 1, OriginalPriceCents: 2, Stock: 1,
		StartsAt: start, EndsAt: start.Add(time.Hour)}
	mustOK(t, db.CreateSale(ctx, sale))
	got, err := db.Sale(ctx, sale.ID)
	mustOK(t, err)
	want := time.Date(2030, 11, 10, 16, 0, 0, 123_000_000, time.UTC)
	if got.StartsAt != want {
		t.Errorf("StartsAt = %v (%v), want %v", got.StartsAt, got.StartsAt.Location(), want)
	}
	if got.CreatedAt.Location() != time.UTC || !got.CreatedAt.Equal(sale.CreatedAt) {
		t.Errorf("CreatedAt = %v, want %v in UTC", got.CreatedAt, sale.CreatedAt)
	}
}

func TestCreateUsers(t *testing.T) { testCreateUsers(t, freshSQLite) }

func testCreateUsers(t *testing.T, fresh freshURL) {
	ctx := context.Background()
	db := openFresh(t, fresh)
	mustOK(t, db.CreateUsers(ctx, nil))

	users := makeUsers(0, 20_000) // more rows than one statement may bind
	mustOK(t, db.CreateUsers(ctx, users))
	ids := map[int64]bool{}
	for _, u := range users {
		if u.ID == 0 || ids[u.ID] || u.CreatedAt.IsZero() {
			t.Fatalf("user %+v: want a fresh ID and CreatedAt", u)
		}
		ids[u.ID] = true
	}
	for _, u := range []*seckill.User{users[0], users[len(users)-1]} {
		got, err := db.UserByPhone(ctx, u.Phone)
		mustOK(t, err)
		if got.ID != u.ID || got.Nickname != u.Nickname {
			t.Errorf("UserByPhone(%s) = %+v, want %+v", u.Phone, got, u)
		}
	}

	t.Run("PhoneTaken", func(t *testing.T) {
		batch := append(makeUsers(100_000, 10), &seckill.User{Phone: users[5].Phone, Role: seckill.RoleBuyer})
		err := db.CreateUsers(ctx, batch)
		if seckill.ErrorCode(err) != seckill.EPhoneTaken {
			t.Fatalf("CreateUsers with a registered phone = %v, want phone_taken", err)
		}
		if _, err := db.UserByPhone(ctx, batch[0].Phone); seckill.ErrorCode(err) != seckill.ENotFound {
			t.Errorf("a refused batch left user %s behind (%v)", batch[0].Phone, err)
		}
	})

	t.Run("PhoneTwiceInBatch", func(t *testing.T) {
		batch := makeUsers(200_000, 3)
		batch = append(batch, &seckill.User{Phone: batch[1].Phone, Role: seckill.RoleBuyer})
		if err := db.CreateUsers(ctx, batch); seckill.ErrorCode(err) != seckill.EPhoneTaken {
			t.Fatalf("CreateUsers with a phone twice = %v, want phone_taken", err)
		}
	})
}

// TestOrderNoCollision checks that a ticket reused for another (sale, user)
// is an error and writes nothing of the batch: it is an engine bug, not a
// redelivery.
func TestOrderNoCollision(t *testing.T) { testOrderNoCollision(t, freshSQLite) }

func testOrderNoCollision(t *testing.T, fresh freshURL) {
	ctx := context.Background()
	db := openFresh(t, fresh)
	users := makeUsers(0, 3)
	mustOK(t, db.CreateUsers(ctx, users))
	sale := &seckill.Sale{Name: "s", PriceCents: 1, OriginalPriceCents: 2, Stock: 10,
		StartsAt: time.Now(), EndsAt: time.Now().Add(time.Hour)}
	mustOK(t, db.CreateSale(ctx, sale))
	now := time.Now()
	_, err := db.WriteOrders(ctx, []seckill.OrderRequest{{SaleID: sale.ID, UserID: users[0].ID, Ticket: "T", At: now}}, now)
	mustOK(t, err)
	_, err = db.WriteOrders(ctx, []seckill.OrderRequest{
		{SaleID: sale.ID, UserID: users[1].ID, Ticket: "U", At: now},
		{SaleID: sale.ID, UserID: users[2].ID, Ticket: "T", At: now},
	}, now)
	if err == nil {
		t.Fatal("WriteOrders with a reused ticket succeeded")
	}
	st, err := db.SaleStats(ctx, sale.ID)
	mustOK(t, err)
	if st.Orders != 1 || st.SQLStockLeft != 9 || st.LedgerSum != 9 {
		t.Errorf("after a failed batch, stats = %+v; want 1 order, 9 left", st)
	}
}

func TestOneSaleShort(t *testing.T) { testOneSaleShort(t, freshSQLite) }

// testOneSaleShort writes one batch for two sales, one with a unit for
// every new order, one with too few, plus a redelivery: PostgreSQL inserts
// every new order before it counts the units, and must take back exactly
// the latest of the short sale's (one ledger row per sale).
func testOneSaleShort(t *testing.T, fresh freshURL) {
	ctx := context.Background()
	db := openFresh(t, fresh)
	users := makeUsers(0, 4)
	mustOK(t, db.CreateUsers(ctx, users))
	newSale := func(stock int64) *seckill.Sale {
		s := &seckill.Sale{Name: "s", PriceCents: 1, OriginalPriceCents: 2, Stock: stock,
			StartsAt: time.Now(), EndsAt: time.Now().Add(time.Hour)}
		mustOK(t, db.CreateSale(ctx, s))
		return s
	}
	plenty, short := newSale(10), newSale(2)
	now := time.Now()
	req := func(s *seckill.Sale, u int) seckill.OrderRequest {
		return seckill.OrderRequest{SaleID: s.ID, UserID: users[u].ID, Ticket: fmt.Sprintf("S%d-%d", s.ID, u), At: now}
	}
	first, err := db.WriteOrders(ctx, []seckill.OrderRequest{req(short, 3)}, now)
	mustOK(t, err)
	reqs := []seckill.OrderRequest{req(plenty, 0), req(short, 0), req(plenty, 1), req(short, 3),
		req(short, 1), req(plenty, 2), req(short, 2)}
	res, err := db.WriteOrders(ctx, reqs, now)
	mustOK(t, err)
	want := []string{"ok", "ok", "ok", "ok", seckill.ESoldOut, "ok", seckill.ESoldOut}
	for i, r := range res {
		got := "ok"
		if r.Status != seckill.ResultSuccess {
			got = r.Reason
		}
		if got != want[i] {
			t.Errorf("result %d (sale %d) = %+v, want %s", i, reqs[i].SaleID, r, want[i])
		}
	}
	if res[3].OrderID != first[0].OrderID {
		t.Errorf("redelivery got order %d, want %d", res[3].OrderID, first[0].OrderID)
	}
	for _, c := range []struct {
		s            *seckill.Sale
		orders, left int64
	}{{plenty, 3, 7}, {short, 2, 0}} {
		st, err := db.SaleStats(ctx, c.s.ID)
		mustOK(t, err)
		if st.Orders != c.orders || st.SQLStockLeft != c.left || st.LedgerSum != c.left {
			t.Errorf("sale %d: stats = %+v; want %d orders, %d left in SQL and ledger", c.s.ID, st, c.orders, c.left)
		}
	}
}

func TestOrderIDs(t *testing.T) { testOrderIDs(t, freshSQLite) }

// testOrderIDs writes batches larger than one statement's rows, where new
// orders and redeliveries alternate across two sales, and checks that
// every request is answered with the id of the order its (sale, user)
// holds: SQLite derives the ids of the rows inserted without RETURNING.
func testOrderIDs(t *testing.T, fresh freshURL) {
	ctx := context.Background()
	db := openFresh(t, fresh)
	const n = 700
	users := makeUsers(0, n)
	mustOK(t, db.CreateUsers(ctx, users))
	var sales [2]*seckill.Sale
	for i := range sales {
		sales[i] = &seckill.Sale{Name: "s", PriceCents: 1, OriginalPriceCents: 2, Stock: n,
			StartsAt: time.Now(), EndsAt: time.Now().Add(time.Hour)}
		mustOK(t, db.CreateSale(ctx, sales[i]))
	}
	now := time.Now()
	req := func(s *seckill.Sale, u int) seckill.OrderRequest {
		return seckill.OrderRequest{SaleID: s.ID, UserID: users[u].ID, Ticket: fmt.Sprintf("I%d-%d", s.ID, u), At: now}
	}
	check := func(reqs []seckill.OrderRequest) {
		t.Helper()
		res, err := db.WriteOrders(ctx, reqs, now)
		mustOK(t, err)
		for i, r := range res {
			o, err := db.OrderBySaleUser(ctx, reqs[i].SaleID, reqs[i].UserID)
			mustOK(t, err)
			if r.Status != seckill.ResultSuccess || r.OrderID != o.ID {
				t.Fatalf("request %d (sale %d, user %d) = %+v; the order is %d", i, r.SaleID, r.UserID, r, o.ID)
			}
		}
	}
	var first, all []seckill.OrderRequest
	for u := range n {
		if u%3 == 1 {
			first = append(first, req(sales[u%2], u))
		}
		all = append(all, req(sales[0], u), req(sales[1], u))
	}
	check(first) // new orders only
	check(all)   // two in three new, one in six a redelivery
	check(all)   // redeliveries only
}

func makeUsers(from, n int) []*seckill.User {
	users := make([]*seckill.User, n)
	for i := range users {
		users[i] = &seckill.User{
			Phone:        fmt.Sprintf("1%010d", from+i),
			Nickname:     fmt.Sprintf("u%d", from+i),
			Role:         seckill.RoleBuyer,
			PasswordHash: "$argon2id$v=19$m=65536,t=1,p=2$c2FsdA$aGFzaA",
		}
	}
	return users
}

func mustOK(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// serverURL returns the URL of a test server from the environment
// variable env (see internal/testenv).
func serverURL(t testing.TB, env string) string {
	t.Helper()
	return testenv.URL(t, env)
}

// testName returns a fresh name for a test schema or database.
func testName() string {
	return fmt.Sprintf("seckill_test_%d_%08x", os.Getpid(), rand.Uint32())
}
