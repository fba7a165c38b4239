package inmem_test

import (
	"testing"

	"seckill"
	"seckill/inmem"
	"seckill/internal/contract"
)

func TestContractOrderQueue(t *testing.T) {
	contract.TestOrderQueue(t, func(t *testing.T) contract.QueueUnderTest {
		q := inmem.NewQueue()
		t.Cleanup(func() { _ = q.Close() })
		return contract.QueueUnderTest{Queue: q, Bus: q, Reopen: func(*testing.T) (seckill.OrderQueue, seckill.ResultBus) {
			_ = q.Close()
			q.Reopen()
			return q, q
		}}
	})
}
