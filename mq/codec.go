package mq

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"time"

	"seckill"
)

// Wire format of an order request, version 1 (the hot path, so not JSON):
//
//	0x01
//	uvarint SaleID, uvarint UserID, varint PriceCents,
//	varint At seconds since 1970, uvarint At nanoseconds,
//	Ticket (the rest of the message)
//
// A message carries one batch of requests of one sale (version 2): what
// concurrent purchases published together, so that the server stores,
// delivers and removes one message for all of them:
//
//	0x02
//	repeated: uvarint length, then a version 1 request of that length
//
// Decoding also accepts a lone version 1 request and the JSON of
// seckill.OrderRequest, for messages published by hand.
const (
	wireV1    = 0x01
	wireBatch = 0x02
)

// appendBatch appends the version 2 message of rs to b.
func appendBatch(b []byte, rs []seckill.OrderRequest) []byte {
	b = append(b, wireBatch)
	var rec [64]byte
	for _, r := range rs {
		one := appendRequest(rec[:0], r)
		b = binary.AppendUvarint(b, uint64(len(one)))
		b = append(b, one...)
	}
	return b
}

// decodeMessage decodes a message of any version into its requests; a
// batch with any malformed part is malformed as a whole.
func decodeMessage(b []byte) ([]seckill.OrderRequest, error) {
	if len(b) == 0 || b[0] != wireBatch {
		r, err := decodeRequest(b)
		if err != nil {
			return nil, err
		}
		return []seckill.OrderRequest{r}, nil
	}
	b = b[1:]
	if len(b) == 0 {
		return nil, errMalformed
	}
	var rs []seckill.OrderRequest
	for len(b) > 0 {
		n, w := binary.Uvarint(b)
		if w <= 0 || n > uint64(len(b)-w) {
			return nil, errMalformed
		}
		one := b[w : w+int(n)]
		if len(one) == 0 || one[0] != wireV1 {
			return nil, errMalformed
		}
		r, err := decodeRequest(one)
		if err != nil {
			return nil, err
		}
		rs = append(rs, r)
		b = b[w+int(n):]
	}
	return rs, nil
}

func appendRequest(b []byte, r seckill.OrderRequest) []byte {
	b = append(b, wireV1)
	b = binary.AppendUvarint(b, uint64(r.SaleID))
	b = binary.AppendUvarint(b, uint64(r.UserID))
	b = binary.AppendVarint(b, r.PriceCents)
	b = binary.AppendVarint(b, r.At.Unix())
	b = binary.AppendUvarint(b, uint64(r.At.Nanosecond()))
	return append(b, r.Ticket...)
}

var errMalformed = errors.New("malformed order request")

// decodeRequest decodes a message; At comes back in UTC.
func decodeRequest(b []byte) (seckill.OrderRequest, error) {
	var r seckill.OrderRequest
	if len(b) == 0 {
		return r, errMalformed
	}
	if b[0] == '{' {
		if err := json.Unmarshal(b, &r); err != nil {
			return r, errors.Join(errMalformed, err)
		}
		if r.SaleID <= 0 || r.UserID <= 0 {
			return r, errMalformed
		}
		return r, nil
	}
	if b[0] != wireV1 {
		return r, errMalformed
	}
	b = b[1:]
	uv := func() uint64 {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			b = nil
			return 0
		}
		b = b[n:]
		return v
	}
	sv := func() int64 {
		v, n := binary.Varint(b)
		if n <= 0 {
			b = nil
			return 0
		}
		b = b[n:]
		return v
	}
	sale, user, price := uv(), uv(), sv()
	sec := sv()
	if b == nil {
		return r, errMalformed
	}
	nsec := uv()
	if b == nil || sale == 0 || user == 0 || sale > 1<<63-1 || user > 1<<63-1 || nsec >= 1e9 {
		return r, errMalformed
	}
	r.SaleID, r.UserID, r.PriceCents = int64(sale), int64(user), price
	r.At = time.Unix(sec, int64(nsec)).UTC()
	r.Ticket = string(b)
	return r, nil
}
