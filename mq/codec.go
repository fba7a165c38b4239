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
	rd := wireReader{b[1:]}
	sale, user, price := rd.uv(), rd.uv(), rd.sv()
	sec := rd.sv()
	nsec := rd.uv()
	if rd.b == nil || sale == 0 || user == 0 || sale > 1<<63-1 || user > 1<<63-1 || nsec >= 1e9 {
		return r, errMalformed
	}
	r.SaleID, r.UserID, r.PriceCents = int64(sale), int64(user), price
	r.At = time.Unix(sec, int64(nsec)).UTC()
	r.Ticket = string(rd.b)
	return r, nil
}

// wireReader reads varints and strings off b; after a malformed one b is
// nil, and every read after that reads zero.
type wireReader struct{ b []byte }

func (rd *wireReader) uv() uint64 {
	v, n := binary.Uvarint(rd.b)
	if n <= 0 {
		rd.b = nil
		return 0
	}
	rd.b = rd.b[n:]
	return v
}

// sv reads a signed varint: binary.Varint's zigzag decoding of a uvarint.
func (rd *wireReader) sv() int64 {
	ux := rd.uv()
	x := int64(ux >> 1)
	if ux&1 != 0 {
		x = ^x
	}
	return x
}

// str reads a uvarint length and that many bytes, shared with
// resultWords when they spell one.
func (rd *wireReader) str() string {
	n := rd.uv()
	if rd.b == nil || n > uint64(len(rd.b)) {
		rd.b = nil
		return ""
	}
	s := internResult(rd.b[:n])
	rd.b = rd.b[n:]
	return s
}

// Wire format of a results message (PublishResults), version 3, so that
// every instance does not decode each batch's results through reflection
// (JSON was a third of the order writer's CPU beside its SQL in a profile
// of BenchmarkWriterDrain):
//
//	0x03
//	repeated: uvarint SaleID, uvarint UserID, varint OrderID,
//	          then Ticket, OrderStatus, Status and Reason, each a uvarint
//	          length and its bytes
//
// Decoding also accepts the JSON array of seckill.OrderResult that
// instances published before it.
const wireResults = 0x03

// appendResults appends the version 3 message of rs to b.
func appendResults(b []byte, rs []seckill.OrderResult) []byte {
	b = append(b, wireResults)
	for _, r := range rs {
		b = binary.AppendUvarint(b, uint64(r.SaleID))
		b = binary.AppendUvarint(b, uint64(r.UserID))
		b = binary.AppendVarint(b, r.OrderID)
		for _, s := range [...]string{r.Ticket, string(r.OrderStatus), r.Status, r.Reason} {
			b = binary.AppendUvarint(b, uint64(len(s)))
			b = append(b, s...)
		}
	}
	return b
}

var errMalformedResults = errors.New("malformed results message")

// decodeResults decodes a results message of either version.
func decodeResults(b []byte) ([]seckill.OrderResult, error) {
	if len(b) == 0 || b[0] != wireResults {
		var rs []seckill.OrderResult
		if err := json.Unmarshal(b, &rs); err != nil {
			return nil, errors.Join(errMalformedResults, err)
		}
		return rs, nil
	}
	rd := wireReader{b[1:]}
	var rs []seckill.OrderResult
	for len(rd.b) > 0 {
		var r seckill.OrderResult
		sale, user := rd.uv(), rd.uv()
		r.OrderID = rd.sv()
		r.Ticket = rd.str()
		r.OrderStatus = seckill.OrderStatus(rd.str())
		r.Status = rd.str()
		r.Reason = rd.str()
		if rd.b == nil || sale > 1<<63-1 || user > 1<<63-1 {
			return nil, errMalformedResults
		}
		r.SaleID, r.UserID = int64(sale), int64(user)
		rs = append(rs, r)
	}
	return rs, nil
}

// resultWords are the strings a result repeats (statuses, the common
// reasons): decoded without a copy of their own.
var resultWords = []string{
	"", seckill.ResultSuccess, seckill.ResultFailed,
	string(seckill.OrderPending), string(seckill.OrderPaid), string(seckill.OrderCancelled), string(seckill.OrderRefunded),
}

// internResult is b as a string, shared with resultWords when it is one.
func internResult(b []byte) string {
	for _, w := range resultWords {
		if string(b) == w {
			return w
		}
	}
	return string(b)
}
