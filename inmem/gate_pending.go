package inmem

// This file holds the gate's pending reservations in a compact form: a
// sale of a million buyers holds a million of them at its peak, before the
// writer has settled any.

// pendingChunk is how many records a slab chunk holds (32 KiB of them):
// the slab grows a chunk at a time and never moves a record, so growing it
// under the sale's lock copies nothing.
const (
	pendingChunkBits = 10
	pendingChunk     = 1 << pendingChunkBits
)

// pendingSlab holds a sale's pending reservations, each in a slot that
// stays its own until it is dropped; dropped slots are reused first. A
// ticket in the form the engine makes (see packTicket) is kept packed in
// its record; any other ticket is kept as given, in odd.
type pendingSlab struct {
	chunks [][]pending
	used   int            // slots handed out, free ones included
	free   int            // 1 + the first free slot; 0 when none is
	n      int            // reservations pending
	odd    map[int]string // slot → a ticket that does not pack
}

// pending is one reservation until it is settled: its user, its ticket
// and when the gate recorded it.
type pending struct {
	user int64
	hi   uint64 // ticket characters 0–9, 5 bits each, under the pending* flags
	lo   uint64 // ticket characters 10–19, 5 bits each
	at   int64  // unix nanoseconds; in a free slot, 1 + the next free slot
}

// claimed reports whether the writer claimed the reservation (Claim).
func (p *pending) claimed() bool { return p.hi&pendingClaimed != 0 }

const (
	pendingClaimed = 1 << 63 // claimed by the writer (Claim): no longer released
	pendingFree    = 1 << 62 // the slot holds no reservation
	pendingOdd     = 1 << 61 // the ticket is in pendingSlab.odd
	pendingFlags   = pendingClaimed | pendingFree | pendingOdd
)

// ticketAlphabet is Crockford's base32, the alphabet of the engine's
// tickets (checkout's ticketAt): 20 of its characters pack into 100 bits.
const ticketAlphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// ticketDigits maps a character to its value in ticketAlphabet, 0xFF
// for one outside it.
var ticketDigits = func() (d [256]byte) {
	for i := range d {
		d[i] = 0xFF
	}
	for i := 0; i < len(ticketAlphabet); i++ {
		d[ticketAlphabet[i]] = byte(i)
	}
	return d
}()

// packTicket packs a ticket of 20 characters of ticketAlphabet into two
// 50-bit halves; ok is false for any other string. The packing is one to
// one, so packed tickets are equal exactly when the strings are.
func packTicket(t string) (hi, lo uint64, ok bool) {
	if len(t) != 20 {
		return 0, 0, false
	}
	for i := 0; i < 20; i++ {
		d := ticketDigits[t[i]]
		if d == 0xFF {
			return 0, 0, false
		}
		if i < 10 {
			hi = hi<<5 | uint64(d)
		} else {
			lo = lo<<5 | uint64(d)
		}
	}
	return hi, lo, true
}

// unpackTicket is the inverse of packTicket.
func unpackTicket(hi, lo uint64) string {
	var b [20]byte
	for i := 9; i >= 0; i-- {
		b[i] = ticketAlphabet[hi&31]
		b[i+10] = ticketAlphabet[lo&31]
		hi >>= 5
		lo >>= 5
	}
	return string(b[:])
}

func (s *pendingSlab) get(slot int) *pending {
	return &s.chunks[slot>>pendingChunkBits][slot&(pendingChunk-1)]
}

// add records a reservation and returns its slot.
func (s *pendingSlab) add(user int64, ticket string, at int64) int {
	var slot int
	if s.free != 0 {
		slot = s.free - 1
		s.free = int(s.get(slot).at)
	} else {
		slot = s.used
		s.used++
		if slot>>pendingChunkBits == len(s.chunks) {
			s.chunks = append(s.chunks, make([]pending, pendingChunk))
		}
	}
	hi, lo, ok := packTicket(ticket)
	if !ok {
		hi, lo = pendingOdd, 0
		if s.odd == nil {
			s.odd = make(map[int]string)
		}
		s.odd[slot] = ticket
	}
	*s.get(slot) = pending{user: user, hi: hi, lo: lo, at: at}
	s.n++
	return slot
}

// holds reports whether the reservation in slot has this ticket.
func (s *pendingSlab) holds(slot int, ticket string) bool {
	p := s.get(slot)
	if p.hi&pendingOdd != 0 {
		return s.odd[slot] == ticket
	}
	hi, lo, ok := packTicket(ticket)
	return ok && p.hi&^pendingFlags == hi && p.lo == lo
}

// ticket returns the ticket of the reservation in slot.
func (s *pendingSlab) ticket(slot int) string {
	p := s.get(slot)
	if p.hi&pendingOdd != 0 {
		return s.odd[slot]
	}
	return unpackTicket(p.hi&^pendingFlags, p.lo)
}

func (s *pendingSlab) claimed(slot int) bool { return s.get(slot).claimed() }

func (s *pendingSlab) claim(slot int) { s.get(slot).hi |= pendingClaimed }

// drop forgets the reservation in slot and frees the slot.
func (s *pendingSlab) drop(slot int) {
	p := s.get(slot)
	if p.hi&pendingOdd != 0 {
		delete(s.odd, slot)
	}
	*p = pending{hi: pendingFree, at: int64(s.free)}
	s.free = slot + 1
	s.n--
}

// each calls f with every reservation pending, in slot order.
func (s *pendingSlab) each(f func(slot int, p *pending)) {
	for slot := 0; slot < s.used; slot++ {
		if p := s.get(slot); p.hi&pendingFree == 0 {
			f(slot, p)
		}
	}
}
