// Package seckill holds the domain of the flash-sale engine: its types, the
// small interfaces every backend implements (stock gate, order queue, stores,
// sessions, limiter) and the application error codes. It imports nothing
// outside the standard library; backends live in their own packages and
// cmd/seckill wires them.
package seckill
