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
// Decoding also accepts the JSON of seckill.OrderRequest, for messages
// published by hand.
const wireV1 = 0x01

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
