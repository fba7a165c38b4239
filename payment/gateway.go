package payment

import (
	"bytes"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"strings"
)

// Gateway methods (Alipay's names).
const (
	MethodCreate = "alipay.trade.precreate"
	MethodQuery  = "alipay.trade.query"
	MethodRefund = "alipay.trade.refund"
	MethodClose  = "alipay.trade.close"
)

// Reply codes and the sub-codes the client understands (Alipay's).
const (
	CodeSuccess          = "10000"
	CodeUnavailable      = "20000"
	CodeMissingParameter = "40001"
	CodeInvalidParameter = "40002"
	CodeBusinessFailed   = "40004"

	SubInvalidSignature = "isv.invalid-signature"
	SubInvalidAppID     = "isv.invalid-app-id"
	SubInvalidParameter = "ACQ.INVALID_PARAMETER"
	SubTradeNotExist    = "ACQ.TRADE_NOT_EXIST"
	SubTradeHasSuccess  = "ACQ.TRADE_HAS_SUCCESS"
	SubTradeHasClose    = "ACQ.TRADE_HAS_CLOSE"
	SubTradeStatusError = "ACQ.TRADE_STATUS_ERROR"
	SubDiscordantRepeat = "ACQ.DISCORDANT_REPEAT_REQUEST"
	SubRefundAmount     = "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL"
)

// BizContent is the JSON of a request's biz_content field; each method
// uses some of it.
type BizContent struct {
	OutTradeNo   string `json:"out_trade_no,omitempty"`
	TradeNo      string `json:"trade_no,omitempty"`
	TotalAmount  string `json:"total_amount,omitempty"`  // create
	Subject      string `json:"subject,omitempty"`       // create
	TimeExpire   string `json:"time_expire,omitempty"`   // create: TimeLayout, China time
	RefundAmount string `json:"refund_amount,omitempty"` // refund
	RefundReason string `json:"refund_reason,omitempty"` // refund
	OutRequestNo string `json:"out_request_no,omitempty"`
}

// Reply is the response object of every method: Code and Msg always, the
// sub-code on failure, the rest as the method has it.
type Reply struct {
	Code        string `json:"code"`
	Msg         string `json:"msg"`
	SubCode     string `json:"sub_code,omitempty"`
	SubMsg      string `json:"sub_msg,omitempty"`
	OutTradeNo  string `json:"out_trade_no,omitempty"`
	TradeNo     string `json:"trade_no,omitempty"`
	QRCode      string `json:"qr_code,omitempty"`       // create: the pay page
	TradeStatus string `json:"trade_status,omitempty"`  // query
	TotalAmount string `json:"total_amount,omitempty"`  // query
	SendPayDate string `json:"send_pay_date,omitempty"` // query: when a paid trade was paid, in TimeLayout, China time
	RefundFee   string `json:"refund_fee,omitempty"`    // refund: refunded in all
	FundChange  string `json:"fund_change,omitempty"`   // refund: "Y" if this call moved money
}

// ReplyKey is the name of method's response object in the answer:
// "alipay.trade.query" → "alipay_trade_query_response".
func ReplyKey(method string) string {
	return strings.ReplaceAll(method, ".", "_") + "_response"
}

// MarshalReply writes the answer to method: {ReplyKey: r, "sign": the
// signature by key over the exact bytes of r's JSON}. With a nil key (a
// request the provider could not attribute) the answer is unsigned.
func MarshalReply(key *rsa.PrivateKey, method string, r Reply) ([]byte, error) {
	obj, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	name, _ := json.Marshal(ReplyKey(method))
	var b bytes.Buffer
	b.WriteString("{")
	b.Write(name)
	b.WriteString(":")
	b.Write(obj)
	if key != nil {
		sign, err := SignBytes(key, obj)
		if err != nil {
			return nil, err
		}
		b.WriteString(`,"sign":`)
		s, _ := json.Marshal(sign)
		b.Write(s)
	}
	b.WriteString("}")
	return b.Bytes(), nil
}

// UnmarshalReply reads the answer to method and checks its signature with
// the provider's key pub. A success (code 10000) must be signed; a failure
// may come unsigned (the provider cannot sign for a request it could not
// attribute), which is safe to believe since it only ever makes us retry
// or give up. A bad signature is an ErrBadSignature.
func UnmarshalReply(pub *rsa.PublicKey, method string, body []byte) (Reply, error) {
	var env map[string]json.RawMessage
	if err := json.Unmarshal(body, &env); err != nil {
		return Reply{}, fmt.Errorf("payment: %s: answer is not JSON: %w", method, err)
	}
	raw, ok := env[ReplyKey(method)]
	if !ok {
		// Alipay answers a request it could not route under this name.
		if raw, ok = env["error_response"]; !ok {
			return Reply{}, fmt.Errorf("payment: %s: answer has no %s", method, ReplyKey(method))
		}
	}
	var r Reply
	if err := json.Unmarshal(raw, &r); err != nil {
		return Reply{}, fmt.Errorf("payment: %s: %w", method, err)
	}
	var sign string
	if s, ok := env["sign"]; ok {
		if err := json.Unmarshal(s, &sign); err != nil {
			return Reply{}, fmt.Errorf("%w: %s answer's sign is not a string", ErrBadSignature, method)
		}
	}
	if sign == "" && r.Code != CodeSuccess {
		return r, nil
	}
	if err := VerifyBytes(pub, raw, sign); err != nil {
		return Reply{}, fmt.Errorf("%s answer: %w", method, err)
	}
	return r, nil
}
