package httpapi

import "encoding/json"

// SendUser pushes msg, encoded as JSON, to every socket the user holds on
// this instance and returns how many it was queued on (0 without a socket,
// or without push), the way the hub delivers results: tests drive the
// hub's buffering, slow-client and ping handling with it. Nothing in the
// product pushes anything but results, so it exists for tests only.
func (s *Server) SendUser(userID int64, msg any) int {
	if s.hub == nil {
		return 0
	}
	return s.hub.send(userID, func() any { return msg })
}

// Broadcast pushes msg, encoded as JSON, to every socket on this instance
// the way the sale push does (best-effort), and returns how many it was
// queued on.
func (s *Server) Broadcast(msg any) int {
	b, err := json.Marshal(msg)
	if err != nil {
		panic(err)
	}
	return s.hub.broadcast(b)
}
