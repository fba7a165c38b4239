package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"
)

// TestNotifyURLNotFromHost: without --public-url, the provider's notify
// URL is the address the server took the pay request on, not the
// request's Host. A buyer who sends another Host (here a loopback address
// where nothing listens) used to send the notification of their payment
// there: the shop never heard of it, and the in-process provider posted to
// whatever host the buyer named.
func TestNotifyURLNotFromHost(t *testing.T) {
	m := runEmbedded(t)
	defer m.Close()
	call := func(method, path, token string, body any, status int, out any) {
		t.Helper()
		apiCall(t, method, m.URL()+path, token, body, status, out)
	}
	var login struct{ Token string }
	call("POST", "/api/sessions", "", map[string]string{"phone": "19900000000", "password": "admin-password"}, 200, &login)
	now := time.Now().UTC()
	var sale struct{ Sale struct{ ID int64 } }
	call("POST", "/api/admin/sales", login.Token, map[string]any{"name": "host", "price_cents": 100, "original_price_cents": 200, "stock": 1,
		"starts_at": now.Add(-time.Minute), "ends_at": now.Add(time.Hour), "require_captcha": false}, 201, &sale)
	id := strconv.FormatInt(sale.Sale.ID, 10)
	var path struct{ Path string }
	call("POST", "/api/sales/"+id+"/path", login.Token, nil, 200, &path)
	call("POST", "/api/sales/"+id+"/purchase/"+path.Path, login.Token, nil, 202, nil)

	type order struct {
		ID     int64
		Status string
	}
	orders := func() []order {
		var list struct{ Orders []order }
		call("GET", "/api/orders", login.Token, nil, 200, &list)
		return list.Orders
	}
	waitFor := func(what string, cond func([]order) bool) {
		t.Helper()
		for deadline := time.Now().Add(15 * time.Second); !cond(orders()); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 15 s (orders %+v)", what, orders())
			}
		}
	}
	waitFor("the order written", func(os []order) bool { return len(os) == 1 })
	o := orders()[0]

	code, _, body, err := apiSend(http.DefaultClient, "POST", fmt.Sprintf("%s/api/orders/%d/pay", m.URL(), o.ID), login.Token, "",
		func(r *http.Request) { r.Host = "127.0.0.2:9" })
	if err != nil || code != 200 {
		t.Fatalf("pay: %d %s %v", code, body, err)
	}
	var p struct {
		PayURL string `json:"pay_url"`
	}
	if err := json.Unmarshal(body, &p); err != nil || p.PayURL == "" {
		t.Fatalf("pay: %s %v", body, err)
	}
	resp, err := formClient.PostForm(p.PayURL, url.Values{"result": {"pay"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	waitFor("the order paid by the provider's notification", func(os []order) bool { return os[0].Status == "paid" })
}
