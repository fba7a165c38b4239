package httpapi_test

import (
	"fmt"
	"sync"
	"testing"
)

// TestCrowd: 2,000 users each try 3 times, concurrently, against a 500-unit
// sale through the real handler → exactly 500 orders to 500 distinct users,
// SQL stock_left 0, gate 0, every other answer 409 duplicate or 410
// sold_out. Twenty sales in a row on one server with the in-memory
// backends, and three on SQLite and embedded JetStream, the embedded
// default of seckill serve.
func TestCrowd(t *testing.T) {
	t.Run("inmem", func(t *testing.T) { testCrowd(t, newStack(t, options{}), 20) })
	t.Run("sqlite", func(t *testing.T) { testCrowd(t, newStack(t, options{sqlite: true}), 3) })
}

func testCrowd(t *testing.T, s *stack, rounds int) {
	const users, tries, stock = 2000, 3, 500
	tokens, _ := s.buyers(users)
	for round := 0; round < rounds; round++ {
		t.Run(fmt.Sprint("round", round), func(t *testing.T) {
			s.t = t
			sale := s.activeSale(stock, false)
			paths := make([]string, users)
			for i, tok := range tokens {
				paths[i] = s.path(tok, sale)
			}
			var mu sync.Mutex
			counts := map[string]int{}
			accepted := map[int]int{}
			var wg sync.WaitGroup
			const workers = 64
			for w := 0; w < workers; w++ {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					for try := 0; try < tries; try++ {
						for i := w; i < users; i += workers {
							r := s.purchase(tokens[i], sale, paths[i])
							key := fmt.Sprintf("%d %s", r.Code, r.errCode())
							mu.Lock()
							counts[key]++
							if r.Code == 202 {
								accepted[i]++
							}
							mu.Unlock()
						}
					}
				}(w)
			}
			wg.Wait()
			if counts["202 "] != stock {
				t.Fatalf("accepted %d purchases, want %d; answers %v", counts["202 "], stock, counts)
			}
			for key, n := range counts {
				if key != "202 " && key != "409 duplicate" && key != "410 sold_out" {
					t.Fatalf("unexpected answer %q ×%d", key, n)
				}
			}
			for i, n := range accepted {
				if n != 1 {
					t.Fatalf("user %d accepted %d times", i, n)
				}
			}
			st := s.settle(sale)
			if st.Orders != stock || st.SQLStockLeft != 0 || st.GateLeft != 0 {
				t.Fatalf("orders %d, sql stock_left %d, gate %d; want %d, 0, 0", st.Orders, st.SQLStockLeft, st.GateLeft, stock)
			}
			s.checkInvariants(sale, st)
		})
	}
}
