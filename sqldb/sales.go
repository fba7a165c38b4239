package sqldb

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"seckill"
)

// CreateSale inserts s, sets ID, CreatedAt and StockLeft = Stock, and
// records the initial stock in the stock ledger, in one transaction.
// EInvalid if the stock is negative or above seckill.MaxStock.
func (db *DB) CreateSale(ctx context.Context, s *seckill.Sale) error {
	if s.Stock < 0 || s.Stock > seckill.MaxStock {
		return seckill.Errorf(seckill.EInvalid, "stock %d out of range 0..%d", s.Stock, seckill.MaxStock)
	}
	created := stamp(db.now())
	var id int64
	err := db.inTx(ctx, func(ctx context.Context, tx *sql.Tx) (err error) {
		id, err = db.insertID(ctx, tx, db.d.q.createSale,
			s.Name, s.Description, s.ImageURL, s.PriceCents, s.OriginalPriceCents,
			s.Stock, s.Stock, db.tv(s.StartsAt), db.tv(s.EndsAt), s.RequireCaptcha, db.tv(created))
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, db.d.q.ledgerRow, id, s.Stock, "initial", db.tv(created))
		return err
	})
	if err != nil {
		return fmt.Errorf("create sale: %w", err)
	}
	s.ID, s.CreatedAt, s.StockLeft = id, created, s.Stock
	return nil
}

// Sale returns the sale or ENotFound.
func (db *DB) Sale(ctx context.Context, id int64) (*seckill.Sale, error) {
	return reread(ctx, db, func(ctx context.Context) (*seckill.Sale, error) {
		return queryOne(db.read.QueryRowContext(ctx, db.d.q.sale, id), scanSale, "sale %d", id)
	})
}

// Sales returns every sale, by start time then id.
func (db *DB) Sales(ctx context.Context) ([]*seckill.Sale, error) {
	return reread(ctx, db, func(ctx context.Context) ([]*seckill.Sale, error) {
		rows, err := db.read.QueryContext(ctx, db.d.q.sales)
		ss, err := queryAll(rows, err, scanSale)
		if err != nil {
			return nil, fmt.Errorf("sales: %w", err)
		}
		return ss, nil
	})
}

// EndSale stops a sale early (seckill.SaleStore): one conditional UPDATE,
// so a sale that ended meanwhile keeps its end, and the sale read back in
// the same transaction. ENotFound if no sale.
func (db *DB) EndSale(ctx context.Context, id int64, at time.Time) (*seckill.Sale, error) {
	t := db.tv(at)
	var sale *seckill.Sale
	err := db.inTx(ctx, func(ctx context.Context, tx *sql.Tx) (err error) {
		if _, err = tx.ExecContext(ctx, db.d.q.endSale, t, t, id, t); err != nil {
			return err
		}
		sale, err = queryOne(tx.QueryRowContext(ctx, db.d.q.sale, id), scanSale, "sale %d", id)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("end sale %d: %w", id, err)
	}
	return sale, nil
}

// SaleStats counts the sale's orders by status and sums its stock ledger,
// all from one snapshot. ENotFound if there is no such sale.
func (db *DB) SaleStats(ctx context.Context, id int64) (*seckill.SaleStats, error) {
	return reread(ctx, db, func(ctx context.Context) (*seckill.SaleStats, error) {
		return queryOne(db.read.QueryRowContext(ctx, db.d.q.saleStats, id, id), scanSaleStats, "sale %d", id)
	})
}
