package httpapi

import (
	"io"
	"net/http"
	"strconv"
	"time"

	"seckill"
	"seckill/account"
	"seckill/checkout"
)

// The request bodies of the API. Each parse function decodes one with
// decode (strictly, within MaxBody) and validates it; handlers pass r.Body
// straight in. They are fuzzed.

type createUserRequest struct {
	Phone    string `json:"phone"`
	Password string `json:"password"`
	Nickname string `json:"nickname"`
}

func parseCreateUser(body io.Reader) (createUserRequest, error) {
	req, err := decode[createUserRequest](body, false)
	if err != nil {
		return req, err
	}
	return req, account.ValidateAccount(req.Phone, req.Password, req.Nickname)
}

type loginRequest struct {
	Phone    string `json:"phone"`
	Password string `json:"password"`
}

func parseLogin(body io.Reader) (loginRequest, error) {
	req, err := decode[loginRequest](body, false)
	if err != nil {
		return req, err
	}
	if req.Phone == "" || req.Password == "" {
		return req, seckill.Errorf(seckill.EInvalid, "phone and password are required")
	}
	return req, nil
}

type createSaleRequest struct {
	Name               string    `json:"name"`
	Description        string    `json:"description"`
	ImageURL           string    `json:"image_url"`
	PriceCents         int64     `json:"price_cents"`
	OriginalPriceCents int64     `json:"original_price_cents"`
	Stock              int64     `json:"stock"`
	StartsAt           time.Time `json:"starts_at"`
	EndsAt             time.Time `json:"ends_at"`
	RequireCaptcha     *bool     `json:"require_captcha"`
}

func parseCreateSale(body io.Reader) (*seckill.Sale, error) {
	req, err := decode[createSaleRequest](body, false)
	if err != nil {
		return nil, err
	}
	s := &seckill.Sale{
		Name: req.Name, Description: req.Description, ImageURL: req.ImageURL,
		PriceCents: req.PriceCents, OriginalPriceCents: req.OriginalPriceCents,
		Stock: req.Stock, StartsAt: req.StartsAt.UTC(), EndsAt: req.EndsAt.UTC(),
		RequireCaptcha: req.RequireCaptcha == nil || *req.RequireCaptcha,
	}
	if err := checkout.ValidateSale(s); err != nil {
		return nil, err
	}
	return s, nil
}

type benchUsersRequest struct {
	Count  int    `json:"count"`
	Prefix string `json:"prefix"`
}

func parseBenchUsers(body io.Reader) (benchUsersRequest, error) {
	req, err := decode[benchUsersRequest](body, false)
	if err != nil {
		return req, err
	}
	return req, account.ValidateProvision(req.Count, req.Prefix)
}

type pathRequest struct {
	CaptchaID string `json:"captcha_id"`
	Answer    string `json:"answer"`
}

func parsePath(body io.Reader) (pathRequest, error) {
	req, err := decode[pathRequest](body, true)
	if err != nil {
		return req, err
	}
	if len(req.CaptchaID) > 128 || len(req.Answer) > 32 {
		return req, seckill.Errorf(seckill.EInvalid, "captcha_id or answer too long")
	}
	return req, nil
}

// pathID parses a numeric path value; anything else names nothing.
func pathID(r *http.Request, name string) (int64, error) {
	return parseID(r.PathValue(name), name)
}

// parseID reads an id in its one spelling: decimal digits without a sign
// or leading zeros, as the API writes it. ParseInt alone also takes "+7"
// and "007", which would give one resource several URLs, and a cache or
// proxy in front that keys on the path would see them as different.
func parseID(v, name string) (int64, error) {
	if v == "" || v[0] < '1' || v[0] > '9' {
		return 0, seckill.Errorf(seckill.ENotFound, "no such %s", name)
	}
	id, err := strconv.ParseInt(v, 10, 64)
	if err != nil || id <= 0 {
		return 0, seckill.Errorf(seckill.ENotFound, "no such %s", name)
	}
	return id, nil
}
