// seckill page: plain JavaScript against the JSON API (see api.md).
// Every piece of server text goes into the page through textContent or
// attributes, never parsed as HTML.
'use strict';

(() => {
  // The session lives in the HttpOnly cookie that login sets: no script,
  // this one included, can read it, so an injected script cannot steal it.
  // Every request goes out with credentials: 'same-origin' and no
  // Authorization header, and GET /api/me tells whether someone is logged
  // in. Earlier versions kept the token in localStorage under this key;
  // a leftover copy is dropped at start (see start).
  const LEGACY_TOKEN_KEY = 'seckill_token';

  // PAYING_KEY (sessionStorage, this tab only) holds the id of the order
  // whose provider page the tab went to, so that coming back to the page
  // (the provider's return URL is the shop's root) shows the orders.
  const PAYING_KEY = 'seckill_paying';

  // NO_POLL (?nopoll in the address) turns off the /result polling
  // fallback, so the browser tests can prove that a result arrived by push.
  // It is for tests only and harmless to anyone else: the page then waits
  // for the push alone.
  const NO_POLL = new URLSearchParams(location.search).has('nopoll');

  const state = {
    me: null,              // GET /api/me, or null when logged out
    sales: [],             // last GET /api/sales (entries refreshed one by one too)
    salesLoaded: false,
    offsetMs: 0,           // server clock minus client clock
    cards: new Map(),      // sale id -> {sig, status, node}
    unlockedAt: new Map(), // sale id -> corrected server time (ms) the card turned active
    orders: [],            // last GET /api/orders
    held: new Map(),       // sale id -> order status ('queued' before an order is known): one per buyer per sale
    buy: null,             // the purchase in the dialog, see openBuy
    resumeBuy: null,       // sale id whose Buy waits for a login
    returnedFrom: null,    // order id (or '') whose payment page the tab came back from, until the orders show
    returnedOrder: '',     // that order's id once shown, marked in the list
    payClosed: new Set(),  // ids of pending orders whose payment the server called closed (not_payable)
  };

  // ---- language -------------------------------------------------------------

  // The page speaks Chinese to a browser that asks for it, English otherwise.
  const LANG = /^zh\b/i.test(navigator.language || '') ? 'zh' : 'en';

  // TEXT holds every sentence the page shows, [English, Chinese]; a function
  // takes the numbers that go into the sentence.
  const TEXT = {
    // errors, by the API's codes (api.md), plus 'network' and 'unknown'
    err_invalid: ['Some of what you entered is not valid. Please check it.', '输入的内容有误，请检查后再试。'],
    err_too_large: ['That is too much text to send.', '提交的内容太长了。'],
    err_unauthenticated: ['Please log in first.', '请先登录。'],
    err_forbidden: ['Your account cannot do that.', '你的账号无权进行此操作。'],
    err_not_found: ['That does not exist (any more).', '内容不存在或已被删除。'],
    err_method_not_allowed: ['That action is not available.', '暂不支持此操作。'],
    err_phone_taken: ['This phone number already has an account. Log in instead.', '该手机号已注册，请直接登录。'],
    err_bad_credentials: ['Wrong phone number or password.', '手机号或密码错误。'],
    err_bad_captcha: ['Wrong answer, or the question expired. Try this new one.', '答案不对或题目已过期，请回答新题目。'],
    err_not_started: ['The sale has not started yet.', '活动还没开始。'],
    err_ended: ['The sale has ended.', '活动已结束。'],
    err_bad_path: ['This purchase link has expired. Please try again.', '购买链接已失效，请重试。'],
    err_duplicate: ['You already have one from this sale — one per person.', '你已抢到过该商品，每人限购一件。'],
    err_sold_out: ['Sold out — every unit is gone.', '已抢光，商品已售罄。'],
    err_rate_limited: [(s) => `Too many tries. Try again in ${s} s.`, (s) => `操作太频繁，请 ${s} 秒后再试。`],
    err_busy: [(s) => `The shop is very busy right now. Try again in ${s} s.`, (s) => `当前人数过多，请 ${s} 秒后再试。`],
    err_internal: ['Something went wrong on our side. Please try again.', '服务器出了点问题，请稍后再试。'],
    err_not_payable: ['This order can no longer be paid.', '该订单已无法支付。'],
    err_not_cancellable: ['This order can no longer be cancelled.', '该订单已无法取消。'],
    err_bad_signature: ['The payment notice could not be verified.', '支付通知校验失败。'],
    err_amount_mismatch: ['The amount paid does not match the order.', '支付金额与订单不符。'],
    err_network: ['Cannot reach the server. Check your connection.', '无法连接服务器，请检查网络。'],
    err_unknown: ['Something went wrong. Please try again.', '出错了，请重试。'],
    err_register_invalid: ['Phone: 11 digits starting with 1. Password: at least 8 characters.', '手机号须为以 1 开头的 11 位数字，密码至少 8 位。'],
    retry_now: ['You can try again now.', '现在可以重试了。'],

    // forms
    phone_bad: ['Enter your 11-digit phone number, starting with 1.', '请输入以 1 开头的 11 位手机号。'],
    password_bad: ['Use at least 8 characters for the password.', '密码至少需要 8 位。'],
    login: ['Log in', '登录'],
    register: ['Register', '注册'],
    logout: ['Log out', '退出'],
    phone: ['Phone', '手机号'],
    password: ['Password', '密码'],
    nickname: ['Nickname', '昵称'],
    create_account: ['Create account', '注册账号'],
    cancel: ['Cancel', '取消'],
    phone_ph: ['11 digits, starts with 1', '以 1 开头的 11 位数字'],
    password_ph: ['at least 8 characters', '至少 8 位'],
    welcome: [(n) => `Welcome back, ${n}.`, (n) => `欢迎回来，${n}。`],
    created: ['Account created. You are logged in.', '注册成功，已登录。'],
    logged_out: ['Logged out.', '已退出登录。'],
    session_over: ['Your session ended; please log in again.', '登录已失效，请重新登录。'],
    login_to_buy: ['Log in to buy — your purchase continues right after.', '请先登录，登录后继续购买。'],

    // sales
    sales: ['Sales', '秒杀活动'],
    loading: ['Loading…', '加载中…'],
    no_sales: ['No sales yet.', '暂无活动。'],
    server_time: [(s) => `Server time ${s}`, (s) => `服务器时间 ${s}`],
    st_upcoming: ['Upcoming', '即将开始'],
    st_active: ['On sale', '抢购中'],
    st_sold_out: ['Sold out', '已抢光'],
    st_ended: ['Ended', '已结束'],
    left: [(l, n) => `${l} / ${n} left`, (l, n) => `剩余 ${l} / ${n}`],
    left_title: ['Units left (may lag by a second)', '剩余数量（可能有约 1 秒延迟）'],
    starts_in: [(d) => `Starts in ${d}`, (d) => `距开始 ${d}`],
    ends_in: [(d) => `Ends in ${d}`, (d) => `距结束 ${d}`],
    ended_at: [(d) => `Ended ${d}`, (d) => `已于 ${d} 结束`],
    buy_now: ['Buy now', '立即抢购'],
    got_it: ['You got it', '已抢到'],
    got_it_pay: ['You got it — pay now', '已抢到 — 去支付'],
    got_queued: ['In line…', '排队中…'],
    got_cancelled: ['Order cancelled', '订单已取消'],
    got_refunded: ['Order refunded', '订单已退款'],
    original_price: [(p) => `original price ${p}`, (p) => `原价 ${p}`],
    // The shop's side.
    adm_title: ['Admin', '管理'],
    adm_new_sale: ['New sale', '新建秒杀'],
    adm_name: ['Name', '名称'],
    adm_desc: ['Description', '描述'],
    adm_image: ['Image URL', '图片地址'],
    adm_price: ['Price', '秒杀价'],
    adm_orig: ['Original price', '原价'],
    adm_stock: ['Stock', '库存'],
    adm_starts: ['Starts (your local time)', '开始（本地时间）'],
    adm_ends: ['Ends', '结束'],
    adm_quick: ['Start in 1 min, run 1 h', '1 分钟后开始，持续 1 小时'],
    adm_captcha: ['Require captcha', '需要验证码'],
    adm_create: ['Create sale', '创建秒杀'],
    adm_dash: ['Live dashboard', '实时看板'],
    adm_bad_price: ['Prices look like 12 or 12.34.', '价格格式如 12 或 12.34。'],
    adm_above: [(p, o) => `The sale price (${p}) must not be above the original price (${o}).`, (p, o) => `秒杀价（${p}）不能高于原价（${o}）。`],
    adm_times: ['Pick a start and an end time.', '请选择开始和结束时间。'],
    adm_past: ['The end time is already past: nobody could buy.', '结束时间已过：无人能够购买。'],
    adm_created: [(n) => `Sale "${n}" created.`, (n) => `秒杀「${n}」已创建。`],
    adm_stop_q: [(n) => `Stop "${n}" now? Nobody can buy it afterwards; orders taken stay.`, (n) => `现在停止「${n}」？停止后无人能再购买，已下的订单保留。`],
    adm_stop_yes: ['Stop the sale', '停止秒杀'],
    adm_stop_no: ['Keep it running', '继续进行'],
    adm_stopped: [(n) => `Sale "${n}" stopped.`, (n) => `秒杀「${n}」已停止。`],
    adm_stop_now: ['Stop now', '立即停止'],
    dash_live: ['● Live', '● 实时'],
    dash_poll: ['Live stream down — refreshing every 2 s', '实时推送中断 — 每 2 秒刷新'],
    dash_connecting: ['Connecting…', '连接中…'],
    dash_left: [(l, n) => `${l} / ${n} left`, (l, n) => `剩余 ${l} / ${n}`],
    dash_sold_chart: ['Units sold over time', '售出数量随时间变化'],
    dash_flow_chart: [(m) => `Admissions and orders per second, last ${m} minutes`, (m) => `最近 ${m} 分钟每秒准入与订单`],
    dash_refused_chart: [(m) => `Refusals per second by reason, last ${m} minutes`, (m) => `最近 ${m} 分钟每秒按原因的拒绝`],
    dash_sell_through: ['Sell-through', '售出进度'],
    dash_per_second: [(m) => `Per second, last ${m} min: `, (m) => `每秒（最近 ${m} 分钟）：`],
    dash_admitted: ['admitted ', '准入 '],
    dash_orders: ['orders ', '订单 '],
    dash_peak: ['peak ', '峰值 '],
    dash_refused: ['Refused ', '拒绝 '],
    dash_hidden: [(n) => `${n} ${n === 1 ? 'sale that ended over an hour ago is' : 'sales that ended over an hour ago are'} not shown here: a card's Stats button brings its row back.`,
      (n) => `${n} 个结束超过一小时的秒杀未显示：点其卡片上的统计按钮可重新显示。`],
    st_orders: ['Orders', '订单'],
    st_paid: ['Paid', '已支付'],
    st_pending_payment: ['Awaiting payment', '待支付'],
    st_cancelled: ['Cancelled', '已取消'],
    st_refunded: ['Refunded', '已退款'],
    st_queued: ['Queued', '排队中'],
    st_refunds_due: ['Refunds due', '待退款'],
    st_gate_left: ['Left at the gate', '闸门剩余'],
    st_sql_stock_left: ['Left in SQL', '数据库剩余'],
    no_captcha: ['no captcha', '免验证码'],
    stats: ['Stats', '数据'],
    offline: ['Connection lost — reconnecting… Buying is paused until the server answers.', '网络连接中断，正在重连… 恢复前暂停抢购。'],
    back_online: ['Connected again.', '已重新连接。'],

    // buying
    one_per_person: [(p) => `${p} · one per person`, (p) => `${p} · 每人限购一件`],
    captcha_alt: ['Captcha: work out the sum shown', '验证码：请计算图中算式'],
    answer: ['Answer', '答案'],
    new_question: ['↻ New', '↻ 换一题'],
    close: ['Close', '关闭'],
    submit_and_buy: ['Submit answer and buy', '提交答案并抢购'],
    type_answer: ['Type the answer to the sum first.', '请先输入算式的答案。'],
    bad_image: ['The server sent an unexpected captcha image.', '服务器返回的验证码图片有误。'],
    checking: ['Checking…', '验证中…'],
    placing: ['Placing your order…', '正在下单…'],
    queued: ['Queued — you are in line. Waiting for the result…', '已排队，正在等待结果…'],
    success_pay: ['Success! Your order is placed — pay before the deadline.', '抢购成功！请在截止时间前付款。'],
    failed: ['Sorry, the purchase did not go through.', '很遗憾，抢购未成功。'],
    still_waiting: ['Still waiting. Check "My orders" in a moment.', '仍在等待结果，请稍后查看“我的订单”。'],
    session_ended: ['Your session ended; log in again to see the result.', '登录已过期，请重新登录查看结果。'],
    pay_url_bad: ['The server sent an unexpected payment page address.', '服务器返回的支付地址有误。'],
    pay_returned: ['Back from the payment page. If you paid, the order turns paid as soon as the payment is confirmed; if not, you can pay it until its deadline.', '已从支付页面返回。如已付款，确认后订单会自动更新；如未付款，可在截止时间前再次支付。'],
    pay_returned_gone: [(st) => `Back from the payment page: this order is no longer awaiting payment (${st}).`, (st) => `已从支付页面返回：该订单已不再等待付款（${st}）。`],
    pay_done: [(n) => `Payment received: order ${n} is paid.`, (n) => `已收到付款，订单 ${n} 已支付。`],
    cancel_confirm: [(n) => `Cancel order ${n}? Its unit goes back on sale, and you cannot buy in this sale again.`, (n) => `确定取消订单 ${n}？商品将退回库存，且你不能再次参与本活动。`],
    cancel_order: ['Cancel order', '取消订单'],
    keep_order: ['Keep it', '保留订单'],
    order_cancelled: ['Order cancelled.', '订单已取消。'],

    // orders
    my_orders: ['My orders', '我的订单'],
    refresh: ['Refresh', '刷新'],
    no_orders: ['No orders yet.', '暂无订单。'],
    col_order: ['Order', '订单号'],
    col_sale: ['Sale', '活动'],
    col_price: ['Price', '价格'],
    col_status: ['Status', '状态'],
    col_created: ['Created', '下单时间'],
    col_deadline: ['Pay within / paid', '付款剩余 / 付款时间'],
    col_actions: ['Actions', '操作'],
    ord_pending_payment: ['Awaiting payment', '待付款'],
    ord_paid: ['Paid', '已付款'],
    ord_cancelled: ['Cancelled', '已取消'],
    ord_refunded: ['Refunded', '已退款'],
    ord_expired: ['Payment time is up', '已超时未付款'],
    captcha_keep: ['Too many new questions just now: answer this one.', '换题次数过多：请回答当前这道题。'],
    ord_pay_closed: ['Payment closed: the order is cancelled at its deadline', '支付已关闭：订单将在截止时间取消'],
    pay_within: [(d) => `Pay within ${d}`, (d) => `请在 ${d} 内付款`],
    pay: ['Pay', '付款'],
    pay_now: ['Pay now', '立即付款'],
  };

  // t returns the sentence for key in the page's language, with args filled in.
  function t(key, ...args) {
    const v = TEXT[key] ? TEXT[key][LANG === 'zh' ? 1 : 0] : key;
    return typeof v === 'function' ? v(...args) : v;
  }

  // translatePage fills the static text of index.html: data-i18n sets the
  // text, data-i18n-placeholder / data-i18n-alt the attributes.
  function translatePage() {
    document.documentElement.lang = LANG === 'zh' ? 'zh-CN' : 'en';
    for (const el of document.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
    for (const el of document.querySelectorAll('[data-i18n-placeholder]')) el.placeholder = t(el.dataset.i18nPlaceholder);
    for (const el of document.querySelectorAll('[data-i18n-alt]')) el.alt = t(el.dataset.i18nAlt);
  }

  // ---- helpers -----------------------------------------------------------

  const $ = (sel, root = document) => root.querySelector(sel);

  // h builds an element: attrs are set as properties (on*, className, …) or
  // attributes (data-*, aria-*); children are nodes or strings (as text).
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (k === 'style') Object.assign(el.style, v); // CSSOM, which the CSP allows
      else if (k.startsWith('data-') || k.startsWith('aria-') || k === 'role') el.setAttribute(k, String(v));
      else el[k] = v;
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  // parseTime reads an RFC 3339 time to milliseconds (NaN if malformed);
  // the server writes nanoseconds, cut to the milliseconds Date keeps.
  const parseTime = (s) => Date.parse(String(s || '').replace(/(\.\d{3})\d+/, '$1'));

  const serverNow = () => Date.now() + state.offsetMs;

  // clockSamples are the last offsets measured, each from one request: the
  // server's time is taken at the midpoint of the request's round trip, so
  // the sample with the shortest trip is the most exact.
  const clockSamples = [];

  // noteServerTime takes server_time from a response that left at t0 and
  // arrived at t1 (client clock) and resets the offset to the best recent
  // sample (the shortest round trip); sale timers follow when it moved. A
  // sample further from the best than both can be off (half of each round
  // trip, and 50 ms for timer resolution) means a clock stepped (the
  // phone's synced, the user set it): the older samples are wrong now and
  // are dropped, rather than ruling the countdowns for half a minute.
  let clockSampleCount = 0; // samples taken, for the browser tests
  function noteServerTime(s, t0, t1) {
    const st = parseTime(s);
    if (Number.isNaN(st) || !(t1 >= t0)) return;
    const sample = { rtt: t1 - t0, offset: st - (t0 + t1) / 2 };
    if (clockSamples.length) {
      const prev = clockSamples.reduce((a, b) => (b.rtt < a.rtt ? b : a));
      if (Math.abs(sample.offset - prev.offset) > (sample.rtt + prev.rtt) / 2 + 50) clockSamples.length = 0;
    }
    clockSamples.push(sample);
    if (clockSamples.length > 6) clockSamples.shift(); // about half a minute of refreshes
    const best = clockSamples.reduce((a, b) => (b.rtt < a.rtt ? b : a));
    const moved = Math.abs(best.offset - state.offsetMs) > 1;
    state.offsetMs = best.offset;
    document.documentElement.dataset.clockOffset = String(Math.round(best.offset));
    document.documentElement.dataset.clockRtt = String(Math.round(best.rtt)); // the offset is right to within half of it
    document.documentElement.dataset.clockSamples = String(++clockSampleCount);
    if (moved) scheduleSaleTimers();
  }

  function money(cents) {
    const n = Number(cents) || 0;
    const sign = n < 0 ? '-' : '';
    const a = Math.abs(Math.trunc(n));
    return `${sign}¥${Math.trunc(a / 100)}.${String(a % 100).padStart(2, '0')}`;
  }

  // parseCents turns "12", "12.3" or "12.34" into 1234; null if malformed.
  function parseCents(s) {
    const m = /^\s*(\d{1,9})(?:\.(\d{1,2}))?\s*$/.exec(s);
    if (!m) return null;
    return Number(m[1]) * 100 + Number((m[2] || '0').padEnd(2, '0'));
  }

  function when(s) {
    const ms = parseTime(s);
    if (!s || Number.isNaN(ms)) return '–';
    return new Date(ms).toLocaleString(LANG === 'zh' ? 'zh-CN' : undefined);
  }

  // duration shows ms as [d ]hh:mm:ss, counting whole seconds down (a
  // countdown reads 00:00:00 in its last second).
  function duration(ms) {
    let s = Math.max(0, Math.floor(ms / 1000));
    const d = Math.floor(s / 86400); s -= d * 86400;
    const hh = Math.floor(s / 3600); s -= hh * 3600;
    const mm = Math.floor(s / 60); s -= mm * 60;
    const p = (n) => String(n).padStart(2, '0');
    return (d ? `${d}d ` : '') + `${p(hh)}:${p(mm)}:${p(s)}`;
  }

  // safeURL returns u if it is an http(s) or same-origin URL, else ''.
  function safeURL(u) {
    if (!u) return '';
    try {
      const url = new URL(u, location.href);
      return url.protocol === 'http:' || url.protocol === 'https:' ? url.href : '';
    } catch {
      return '';
    }
  }

  // The toast is a popover: shown, it joins the top layer above an open
  // dialog and its backdrop (no z-index can rise above a modal dialog).
  const POPOVER = typeof HTMLElement.prototype.showPopover === 'function';
  let toastTimer = 0;
  function toast(msg, kind = 'info') {
    const el = $('#toast');
    el.textContent = msg;
    el.className = `toast ${kind}`;
    if (POPOVER) {
      // Shown again, it goes on top of whatever opened since.
      if (el.matches(':popover-open')) el.hidePopover();
      el.showPopover();
    } else {
      el.hidden = false;
    }
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => {
      if (POPOVER) { if (el.matches(':popover-open')) el.hidePopover(); } else el.hidden = true;
    }, 4000);
  }

  // raiseToast puts an open toast back on top of the top layer, above a
  // dialog opened after it.
  function raiseToast() {
    const el = $('#toast');
    if (POPOVER && el.matches(':popover-open')) {
      el.hidePopover();
      el.showPopover();
    }
  }

  // ---- API ---------------------------------------------------------------

  // api calls the JSON API and resolves to {ok, status, data, error,
  // retryAfter, t0, t1}; error is {code} from the error body ('network' when
  // the server cannot be reached); t0 and t1 are when the request left and
  // its answer arrived (client clock). It never rejects.
  async function api(method, url, body) {
    const headers = { Accept: 'application/json' };
    const init = { method, headers, credentials: 'same-origin', cache: 'no-store' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let res;
    const p0 = performance.now();
    let t0 = Date.now();
    try {
      res = await fetch(url, init);
    } catch {
      goOffline();
      return { ok: false, status: 0, data: null, error: { code: 'network' }, retryAfter: null };
    }
    let t1 = Date.now();
    goOnline();
    let data = null;
    if (res.status !== 204) {
      try { data = await res.json(); } catch { data = null; }
    }
    [t0, t1] = wireTimes(res.url, p0, t0, t1);
    const out = { ok: res.ok, status: res.status, data, error: null, retryAfter: res.headers.get('Retry-After'), t0, t1 };
    if (!res.ok) {
      const e = data && data.error;
      out.error = { code: (e && e.code) || 'unknown', message: (e && e.message) || '' };
      if (res.status === 401 && state.me && url !== '/api/sessions') loggedOut();
    }
    return out;
  }

  // wireTimes returns when the request left and its answer's first byte
  // arrived, on the client clock, from the browser's resource timing: the
  // times a script sees (t0, t1) also hold the time the main thread was
  // busy, which on a loading page is tens of milliseconds and would skew
  // the server clock's midpoint. Without an entry it returns t0 and t1.
  function wireTimes(url, p0, t0, t1) {
    if (!window.performance || !performance.getEntriesByName) return [t0, t1];
    const all = performance.getEntriesByName(url, 'resource');
    let e = null;
    for (const x of all) if (x.startTime >= p0 - 1) e = x;
    if (performance.getEntriesByType('resource').length > 200) performance.clearResourceTimings();
    if (!e || !(e.requestStart > 0) || !(e.responseStart >= e.requestStart)) return [t0, t1];
    const base = Date.now() - performance.now(); // the client clock at performance time 0
    return [base + e.requestStart, base + e.responseStart];
  }

  // retrySeconds is the wait a 429 or 503 asks for (at least a second).
  const retrySeconds = (r) => Math.max(1, Math.ceil(Number(r.retryAfter) || 1));

  // errText is the plain sentence for a failed call; overrides maps codes to
  // keys of TEXT where the context knows better.
  function errText(r, overrides = {}) {
    const code = r.error ? r.error.code : 'unknown';
    return errCode(overrides[code] ? overrides[code] : `err_${code}`, retrySeconds(r));
  }

  function errCode(key, seconds = 1) {
    return TEXT[key] ? t(key, seconds) : t('err_unknown');
  }

  // countdownMessage writes the sentence of code with the seconds left into
  // el, every second until they run out, then onDone. It returns a function
  // that stops it.
  function countdownMessage(el, key, seconds, onDone) {
    const until = Date.now() + seconds * 1000;
    let timer = 0;
    const step = () => {
      const left = Math.ceil((until - Date.now()) / 1000);
      if (left <= 0) {
        el.textContent = t('retry_now');
        if (onDone) onDone();
        return;
      }
      el.textContent = t(key, left);
      timer = setTimeout(step, ((until - Date.now()) % 1000) + 5);
    };
    step();
    return () => clearTimeout(timer);
  }

  // ---- connection ------------------------------------------------------------

  // While the server does not answer (a request failed on the network, or
  // the push socket dropped and the server does not answer a HEAD of the
  // page) the page says so and buying is off; it asks again every 2 s
  // until the server is back. (The health checks are on the operations
  // listener, not here.)
  const net = { online: true, probeTimer: 0 };

  function goOffline() {
    if (!net.online) return;
    net.online = false;
    $('#offline').hidden = false;
    renderSales();
    syncDialog();
    clearTimeout(net.probeTimer);
    net.probeTimer = setTimeout(probe, 2000);
  }

  function goOnline() {
    if (net.online) return;
    net.online = true;
    clearTimeout(net.probeTimer);
    $('#offline').hidden = true;
    renderSales();
    syncDialog();
    // Catch up with what changed meanwhile: sales, the session, the socket.
    loadSales();
    if (state.me) {
      push.retryMs = 0;
      pushConnect();
      loadOrders();
    }
  }

  // healthy resolves to whether the server answers a HEAD of the page
  // within 3 s (a proxy in front answers 502 while seckill is away).
  async function healthy() {
    try {
      const r = await fetch('/', { method: 'HEAD', cache: 'no-store', signal: AbortSignal.timeout(3000) });
      return r.ok;
    } catch {
      return false;
    }
  }

  async function probe() {
    if (net.online) return;
    if (await healthy()) goOnline();
    else net.probeTimer = setTimeout(probe, 2000);
  }

  // ---- push (GET /api/ws) --------------------------------------------------

  // While someone is logged in the page holds a WebSocket; the server pushes
  // the result of each purchase on it. Polling /result stays as the fallback
  // (slower while the socket is open). Both feed one store of results
  // (noteResult), so a push that lands while a poll is on its way is shown
  // at once, and the first final result wins. The socket authenticates with
  // the session cookie set at login.
  const push = { ws: null, open: false, retryMs: 0, timer: 0, opened: false };

  function pushConnect() {
    if (!state.me || push.ws || !('WebSocket' in window)) return;
    clearTimeout(push.timer);
    let ws;
    try {
      // An admin's socket also streams the dashboard.
      ws = new WebSocket(`${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}${isAdmin() ? '/api/admin/ws' : '/api/ws'}`);
    } catch {
      return;
    }
    push.ws = ws;
    ws.onopen = () => {
      push.open = true;
      push.retryMs = 0;
      dashStream(true);
      // Nothing is replayed to a new socket: after a reconnect, what moved
      // meanwhile comes from the list.
      if (push.opened) loadOrders();
      push.opened = true;
      // A result may have been pushed before this socket opened.
      const b = state.buy;
      if (b && b.phase === 'waiting' && !NO_POLL) pollOnce(b.sale.id);
    };
    ws.onmessage = (ev) => {
      let m;
      try { m = JSON.parse(ev.data); } catch { return; }
      if (m.type === 'order_result') noteResult(m.sale_id, m);
      else if (m.type === 'order_status') noteOrderStatus(m);
      else if (m.type === 'sale') noteSalePush(m);
      else if (m.type === 'dash') noteDash(m);
    };
    ws.onclose = async (ev) => {
      if (push.ws !== ws) return;
      push.ws = null;
      push.open = false;
      dashStream(false);
      if (!state.me) return;
      // 4001: the session ended (expired, logged out or revoked, perhaps
      // elsewhere). Reconnecting would be refused: ask who is logged in
      // instead, which shows the page logged out (a 401), or reconnects
      // as whoever is (another tab may have logged in again).
      if (ev.code === 4001) {
        push.retryMs = 0;
        const status = await loadMe();
        if (!state.me) toast(t('session_over'));
        else if (push.ws) return;
        else if (status === 200) pushConnect();
        else {
          // Not told (busy, or over the read budget): try again later,
          // the handshake then says whether the session lives.
          push.retryMs = 1000;
          push.timer = setTimeout(pushConnect, push.retryMs);
        }
        return;
      }
      // The server went away, or this session has no cookie: which one,
      // healthy tells.
      if (!(await healthy())) goOffline();
      if (!state.me || push.ws) return;
      push.retryMs = Math.min(push.retryMs ? push.retryMs * 2 : 1000, 30000);
      push.timer = setTimeout(pushConnect, push.retryMs);
    };
  }

  function pushDisconnect() {
    clearTimeout(push.timer);
    push.retryMs = 0;
    push.opened = false;
    const ws = push.ws;
    push.ws = null;
    push.open = false;
    if (ws) ws.close();
  }

  // noteSalePush applies a pushed sale change ({sale_id, left, state}),
  // which servers that push them send.
  function noteSalePush(m) {
    const s = saleById(m.sale_id);
    if (!s) return;
    if (typeof m.left === 'number') s.stock_left = m.left;
    if (m.state === 'sold_out') s.status = 'sold_out';
    else if (m.state === 'running') s.status = 'active';
    else if (m.state) s.status = m.state;
    noteSold(s);
    renderSales();
    renderDashboard();
    syncDialog();
  }

  // ---- results -------------------------------------------------------------

  // results holds the final result of the buyer's latest purchase per sale
  // (sale id as a string -> {status, order_id, reason, ticket});
  // resultWaiters the callbacks of whoever waits for one.
  const results = new Map();
  const resultWaiters = new Map();
  // placed holds, per sale, the ticket of the purchase this page placed
  // and waits for, or null while its 202 is on its way. A failure under
  // another ticket is not its outcome: it is an older request of the
  // buyer's, landed late and refused (its reservation was given back),
  // while the new one is queued. earlyFailures keeps, by ticket, the
  // failures that came while the 202 was on its way, for when it tells
  // which one is this purchase's.
  const placed = new Map();
  const earlyFailures = new Map();

  // noteResult records a result, pushed or polled, and reports whether it
  // was final; the dialog and the cards show it the moment it is noted. A
  // success counts under any ticket (the buyer has one order per sale,
  // whichever request made it), and is final for good. A failure counts
  // only under the ticket of the purchase placed here, and only until a
  // success comes: a page that has no ticket to go by (the purchase was
  // placed in another tab, or answered 503 and went through after all)
  // may hear an older request's late failure first.
  function noteResult(saleId, res) {
    if (!res || (res.status !== 'success' && res.status !== 'failed')) return false;
    const key = String(saleId);
    const had = results.get(key);
    if (had && (had.status === 'success' || res.status === 'failed')) return true;
    // A buyer holds at most one order per sale: a failure in a sale they
    // hold an order in (known from the orders list, say after a reload)
    // is an older request's.
    if (res.status === 'failed' && state.orders.some((o) => String(o.sale_id) === key)) return false;
    if (res.status === 'failed' && res.ticket && placed.has(key)) {
      const want = placed.get(key);
      if (want === null) {
        if (!earlyFailures.has(key)) earlyFailures.set(key, new Map());
        earlyFailures.get(key).set(res.ticket, res);
        return false;
      }
      if (want && want !== res.ticket) return false;
    }
    results.set(key, res);
    if (res.status === 'success') state.held.set(key, 'pending_payment');
    else state.held.delete(key);
    if (res.status === 'failed' && res.reason === 'sold_out') markSoldOut(saleId);
    const b = state.buy;
    const showing = b && String(b.sale.id) === key;
    if (showing && (b.phase === 'waiting' || (had && b.phase === 'done' && $('#buy-status').dataset.result === 'failed'))) showResult(b, res);
    for (const wake of resultWaiters.get(key) || []) wake(res);
    resultWaiters.delete(key);
    renderSales();
    if (res.status === 'success') loadOrders();
    return true;
  }

  // waitResult resolves with the final result of the sale's purchase as
  // soon as there is one (at once if it is already noted), or with null
  // after ms.
  function waitResult(saleId, ms) {
    const key = String(saleId);
    if (results.has(key)) return Promise.resolve(results.get(key));
    return new Promise((resolve) => {
      const set = resultWaiters.get(key) || new Set();
      resultWaiters.set(key, set);
      const done = (m) => {
        clearTimeout(timer);
        set.delete(done);
        resolve(m);
      };
      const timer = setTimeout(() => done(null), ms);
      set.add(done);
    });
  }

  // pollOnce asks /result for the sale and notes a final answer.
  async function pollOnce(saleId) {
    const r = await api('GET', `/api/sales/${encodeURIComponent(saleId)}/result`);
    if (r.ok) noteResult(saleId, r.data);
    return r;
  }

  // ---- account -----------------------------------------------------------

  // loadMe asks who is logged in and returns the answer's status. Only a
  // 401 means nobody: a 429 (the read budget) or a 5xx keeps what the page
  // knows, as being offline does.
  async function loadMe() {
    const r = await api('GET', '/api/me');
    if (r.ok) {
      // Another tab may have logged in as someone else meanwhile: what
      // this page knew of the last user's purchases is not theirs.
      if (state.me && state.me.id !== r.data.id) forgetUser();
      state.me = r.data;
    } else if (r.status === 401) state.me = null;
    else return r.status;
    renderAccount();
    return r.status;
  }

  function loggedOut() {
    const b = state.buy;
    state.me = null;
    forgetUser();
    renderAccount();
    if (b) {
      // The session ended (another tab logged out, or it expired) while
      // the dialog was open: its Buy cannot go on. Logging in resumes it.
      closeBuy();
      state.resumeBuy = b.sale.id;
      showAuth('login');
      toast(t('login_to_buy'), 'warn');
    }
  }

  // forgetUser drops what the page knows of the logged-in user's orders
  // and purchases.
  function forgetUser() {
    state.orders = [];
    state.held.clear();
    results.clear();
    placed.clear();
    earlyFailures.clear();
    state.payClosed.clear();
  }

  function renderAccount() {
    const nav = $('#account');
    const me = state.me;
    if (me) {
      nav.replaceChildren(
        h('span', { className: 'who' },
          h('strong', {}, me.nickname || me.phone),
          me.role === 'admin' ? h('span', { className: 'badge admin' }, 'admin') : null),
        h('button', { type: 'button', className: 'small', onclick: logout }, t('logout')),
      );
      $('#auth').hidden = true;
    } else {
      nav.replaceChildren(
        h('button', { type: 'button', className: 'small', onclick: () => showAuth('login') }, t('login')),
        h('button', { type: 'button', className: 'small primary', onclick: () => showAuth('register') }, t('register')),
      );
    }
    $('#orders-section').hidden = !me;
    $('#admin-section').hidden = !(me && me.role === 'admin');
    if (me) pushConnect();
    else pushDisconnect();
    if (me) loadOrders();
    dashSync();
    renderSales();
  }

  function showAuth(tab) {
    $('#auth').hidden = false;
    for (const b of document.querySelectorAll('#auth .tab')) {
      b.classList.toggle('active', b.dataset.tab === tab);
      b.setAttribute('aria-selected', String(b.dataset.tab === tab));
    }
    $('#login-form').hidden = tab !== 'login';
    $('#register-form').hidden = tab !== 'register';
    $('#auth').scrollIntoView({ block: 'nearest' });
    $(`#${tab}-form input`).focus();
  }

  // login logs in; the answer's Set-Cookie holds the session (its body's
  // token is for API clients and is left alone here).
  async function login(phone, password) {
    const r = await api('POST', '/api/sessions', { phone, password });
    if (!r.ok) return r;
    await loadMe();
    return r;
  }

  // resumePurchase opens the Buy that waited for a login, if its sale is
  // still one to buy.
  function resumePurchase() {
    const id = state.resumeBuy;
    state.resumeBuy = null;
    const s = id === null ? null : saleById(id);
    if (s && state.me && state.me.role !== 'admin' && buyable(s)) openBuy(s);
  }

  // logout ends the session; the server clears the cookie.
  async function logout() {
    // Closed first, so that the server's close of the logged-out session's
    // socket (4001) finds it gone and says nothing more.
    pushDisconnect();
    await api('DELETE', '/api/sessions');
    loggedOut();
    toast(t('logged_out'));
  }

  function formError(form, msg) {
    const el = $('[data-error]', form);
    if (form.stopCountdown) form.stopCountdown();
    form.stopCountdown = null;
    el.textContent = msg || '';
  }

  // authError shows why a login or registration failed; a rate limit
  // counts its wait down.
  function authError(form, r, overrides) {
    formError(form, '');
    if (r.status === 429 || r.error.code === 'rate_limited') {
      form.stopCountdown = countdownMessage($('[data-error]', form), 'err_rate_limited', retrySeconds(r));
      return;
    }
    formError(form, errText(r, overrides));
  }

  // checkPhone and checkPassword replace the browser's generic messages
  // (a pattern's "match the requested format") with plain ones.
  function checkPhone(inp) {
    inp.setCustomValidity(/^1\d{10}$/.test(inp.value.trim()) ? '' : t('phone_bad'));
  }

  function checkPassword(inp) {
    inp.setCustomValidity(inp.value.length >= 8 ? '' : t('password_bad'));
  }

  function setupAuth() {
    for (const b of document.querySelectorAll('#auth .tab')) b.addEventListener('click', () => showAuth(b.dataset.tab));
    for (const b of document.querySelectorAll('[data-close="auth"]')) {
      b.addEventListener('click', () => { $('#auth').hidden = true; state.resumeBuy = null; });
    }
    for (const inp of document.querySelectorAll('#auth input[name="phone"]')) {
      checkPhone(inp);
      inp.addEventListener('input', () => checkPhone(inp));
    }
    for (const inp of document.querySelectorAll('#auth input[name="password"]')) {
      checkPassword(inp);
      inp.addEventListener('input', () => checkPassword(inp));
    }
    const resetForm = (f) => {
      f.reset();
      for (const inp of f.querySelectorAll('input[name="phone"]')) checkPhone(inp);
      for (const inp of f.querySelectorAll('input[name="password"]')) checkPassword(inp);
    };

    $('#login-form').addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const f = ev.target;
      formError(f, '');
      const r = await login(f.phone.value.trim(), f.password.value);
      if (!r.ok) return authError(f, r);
      resetForm(f);
      toast(t('welcome', state.me ? (state.me.nickname || state.me.phone) : ''), 'ok');
      resumePurchase();
    });

    $('#register-form').addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const f = ev.target;
      formError(f, '');
      const body = { phone: f.phone.value.trim(), password: f.password.value, nickname: f.nickname.value.trim() };
      const r = await api('POST', '/api/users', body);
      if (!r.ok) return authError(f, r, { invalid: 'err_register_invalid' });
      const l = await login(body.phone, body.password);
      if (!l.ok) return authError(f, l);
      resetForm(f);
      toast(t('created'), 'ok');
      resumePurchase();
    });
  }

  // ---- sales -------------------------------------------------------------

  const saleById = (id) => state.sales.find((s) => String(s.id) === String(id)) || null;

  // effectiveStatus follows the server's status but moves it along with the
  // (server-corrected) clock between refreshes.
  function effectiveStatus(s, now) {
    const start = parseTime(s.starts_at);
    const end = parseTime(s.ends_at);
    if (s.status === 'ended' || now >= end) return 'ended';
    if (now < start) return 'upcoming';
    if (s.status === 'sold_out' || s.stock_left <= 0) return 'sold_out';
    return 'active';
  }

  // buyable reports whether Buy is on for the sale: on sale, not bought by
  // this buyer, and the server reachable.
  const buyable = (s) => net.online && effectiveStatus(s, serverNow()) === 'active' && !state.held.has(String(s.id));

  async function loadSales() {
    const r = await api('GET', '/api/sales');
    if (!r.ok) {
      if (!state.sales.length) $('#sales').replaceChildren(h('p', { className: 'error' }, errText(r)));
      return;
    }
    const known = new Set(state.sales.map((s) => s.id));
    state.sales = r.data.sales || [];
    state.salesLoaded = true;
    noteServerTime(r.data.server_time, r.t0, r.t1);
    // Orders listed before their sale was known show its number: its
    // name now.
    if (state.orders.some((o) => !known.has(o.sale_id) && saleById(o.sale_id))) renderOrders();
    renderSales();
    scheduleSaleTimers();
    for (const x of state.sales) noteSold(x);
    renderDashboard();
    syncDialog();
  }

  // refreshSale reloads one sale's card (its stock moves while the dialog
  // is open).
  async function refreshSale(id) {
    const r = await api('GET', `/api/sales/${encodeURIComponent(id)}`);
    if (!r.ok) return;
    const i = state.sales.findIndex((s) => String(s.id) === String(id));
    if (i >= 0) state.sales[i] = r.data.sale;
    noteServerTime(r.data.server_time, r.t0, r.t1);
    renderSales();
    syncDialog();
  }

  // markSoldOut turns a sale's Buy off at once, before the next refresh
  // says so: a purchase was just refused for want of stock.
  function markSoldOut(id) {
    const s = saleById(id);
    if (!s) return;
    s.stock_left = 0;
    s.status = 'sold_out';
    renderSales();
    syncDialog();
  }

  // Sale timers re-render a card at the instant its sale starts or ends,
  // by the server's clock (as far as the offset knows it), rather than on
  // the next tick of a 1-second timer.
  const saleTimers = new Map();

  function scheduleSaleTimers() {
    for (const id of saleTimers.values()) clearTimeout(id);
    saleTimers.clear();
    const now = serverNow();
    for (const s of state.sales) {
      const at = [parseTime(s.starts_at), parseTime(s.ends_at)].find((x) => x > now);
      if (at !== undefined) armSaleTimer(s.id, at);
    }
  }

  function armSaleTimer(id, at) {
    // setTimeout keeps 31 bits of milliseconds: a far sale is re-armed later.
    const wait = Math.min(at - serverNow(), 3600000);
    saleTimers.set(id, setTimeout(() => {
      if (serverNow() < at) return armSaleTimer(id, at); // the offset moved, or the timer was capped
      saleTimers.delete(id);
      renderSales();
      syncDialog();
      const s = saleById(id);
      const next = s ? parseTime(s.ends_at) : NaN;
      if (next > serverNow()) armSaleTimer(id, next);
    }, Math.max(0, wait)));
  }

  function renderSales() {
    const box = $('#sales');
    if (!state.salesLoaded) return;
    if (!state.sales.length) {
      box.replaceChildren(h('p', { className: 'muted' }, t('no_sales')));
      state.cards.clear();
      return;
    }
    const now = serverNow();
    const next = new Map();
    const nodes = salesInOrder(now).map((s) => {
      const status = effectiveStatus(s, now);
      const old = state.cards.get(s.id);
      // The moment a card opens, by the server's clock as this page knows
      // it: the browser tests compare it with the sale's start.
      if (old && old.status === 'upcoming' && status === 'active' && !state.unlockedAt.has(s.id)) state.unlockedAt.set(s.id, now);
      const held = state.held.get(String(s.id)) || '';
      const sig = JSON.stringify([s, status, state.me && state.me.role, held, net.online, state.unlockedAt.get(s.id), LANG]);
      const node = old && old.sig === sig ? old.node : saleCard(s, status, held);
      next.set(s.id, { sig, status, node });
      return node;
    });
    state.cards = next;
    // Unchanged cards stay where they are: taking a node out of the page,
    // even to put it back, drops the keyboard focus on it.
    const same = box.children.length === nodes.length && nodes.every((n, i) => box.children[i] === n);
    if (!same) keepFocus(box, () => box.replaceChildren(...nodes));
    tick();
  }

  // salesInOrder is the order of the cards: on sale (soonest end first),
  // sold out, upcoming (soonest start first), then ended (latest first),
  // so what can be bought is at the top and the past at the bottom.
  function salesInOrder(now) {
    const rank = { active: 0, sold_out: 1, upcoming: 2, ended: 3 };
    const key = (s, status) => status === 'upcoming' ? parseTime(s.starts_at)
      : status === 'ended' ? -parseTime(s.ends_at) : parseTime(s.ends_at);
    return state.sales.map((s) => ({ s, status: effectiveStatus(s, now) }))
      .sort((a, b) => rank[a.status] - rank[b.status] || key(a.s, a.status) - key(b.s, b.status) || a.s.id - b.s.id)
      .map((x) => x.s);
  }

  // keepFocus runs render, which rebuilds what box holds, and gives the
  // keyboard focus back to the rebuilt twin of the element inside box that
  // had it (the same tag and data-* attributes, else the same first data-*
  // attribute), so a refresh never throws a keyboard or screen-reader user
  // back to the top of the page.
  function keepFocus(box, render) {
    const had = document.activeElement;
    if (!had || had === document.body || !box.contains(had)) return render();
    const data = [...had.attributes].filter((a) => a.name.startsWith('data-'));
    const sel = (attrs) => had.tagName.toLowerCase() + attrs.map((a) => `[${a.name}="${CSS.escape(a.value)}"]`).join('');
    render();
    if (document.activeElement === had) return;
    if (had.isConnected) return had.focus({ preventScroll: true }); // taken out and put back
    if (!data.length) return;
    const twin = box.querySelector(sel(data)) || box.querySelector(sel(data.slice(0, 1)));
    if (twin && !twin.disabled) twin.focus({ preventScroll: true });
  }

  // buyButton is the card's main button: Buy now, or what the buyer
  // already holds in the sale (then no captcha round is offered).
  function buyButton(s, status, held) {
    if (held) {
      const gone = held === 'cancelled' || held === 'refunded';
      const payable = held === 'pending_payment';
      return h('button', {
        type: 'button', className: gone ? '' : 'got', 'data-buy': s.id, 'data-held': held,
        disabled: gone || !net.online,
        onclick: () => $('#orders-section').scrollIntoView({ behavior: 'smooth', block: 'start' }),
      }, gone ? t(held === 'refunded' ? 'got_refunded' : 'got_cancelled') : held === 'queued' ? t('got_queued') : payable ? t('got_it_pay') : t('got_it'));
    }
    const label = status === 'active' ? t('buy_now') : t(`st_${status}`);
    return h('button', {
      type: 'button', className: 'primary', 'data-buy': s.id, 'aria-label': `${label}: ${s.name}`,
      disabled: status !== 'active' || !net.online,
      onclick: () => openBuy(s),
    }, label);
  }

  function saleCard(s, status, held) {
    const img = safeURL(s.image_url);
    const left = Math.max(0, Number(s.stock_left) || 0);
    const pct = s.stock > 0 ? Math.round((100 * left) / s.stock) : 0;
    const admin = state.me && state.me.role === 'admin';
    const unlocked = state.unlockedAt.get(s.id);
    return h('article', {
      className: `card ${status}`, 'data-sale': s.id, 'data-status': status,
      'data-unlocked-at': unlocked === undefined ? null : String(Math.round(unlocked)),
    },
    img ? h('img', { className: 'thumb', src: img, alt: '', loading: 'lazy', referrerPolicy: 'no-referrer' })
      : h('div', { className: 'thumb placeholder', 'aria-hidden': 'true' }, '⚡'),
    h('div', { className: 'card-body' },
      h('div', { className: 'card-top' },
        h('h3', {}, s.name),
        h('span', { className: `badge ${status}` }, t(`st_${status}`))),
      s.description ? h('p', { className: 'desc' }, s.description) : null,
      h('p', { className: 'price' },
        h('strong', {}, money(s.price_cents)),
        s.original_price_cents > s.price_cents ? h('s', { className: 'muted', 'aria-label': t('original_price', money(s.original_price_cents)) }, money(s.original_price_cents)) : null),
      h('div', { className: 'stock', title: t('left_title') },
        h('div', { className: 'bar' }, h('span', { style: { width: `${pct}%` } })),
        h('span', { className: 'muted', 'data-left': s.id }, t('left', left, s.stock))),
      h('p', { className: 'countdown', 'data-countdown': s.id }),
      h('div', { className: 'row' },
        // The shop's own account does not buy.
        admin ? null : buyButton(s, status, held),
        s.require_captcha ? null : h('span', { className: 'muted small-text' }, t('no_captcha')),
        admin ? h('button', { type: 'button', className: 'small', 'data-stats': s.id, onclick: () => showStats(s.id) }, t('stats')) : null)));
  }

  // tick refreshes the clock, the countdowns and the orders' pay deadlines;
  // it re-renders the cards whose status the clock has moved on (the sale
  // timers normally got there first).
  function tick() {
    const now = serverNow();
    $('#clock').textContent = t('server_time', new Date(now).toLocaleTimeString(LANG === 'zh' ? 'zh-CN' : undefined));
    let moved = false;
    for (const s of state.sales) {
      const el = document.querySelector(`[data-countdown="${CSS.escape(String(s.id))}"]`);
      const status = effectiveStatus(s, now);
      const card = state.cards.get(s.id);
      if (card && card.status !== status) moved = true;
      if (!el) continue;
      if (status === 'upcoming') el.textContent = t('starts_in', duration(parseTime(s.starts_at) - now));
      else if (status === 'active' || status === 'sold_out') el.textContent = t('ends_in', duration(parseTime(s.ends_at) - now));
      // A stopped sale ended before its end time (the push that said so
      // carries none): no time rather than a wrong one.
      else el.textContent = parseTime(s.ends_at) > now ? t('st_ended') : t('ended_at', when(s.ends_at));
    }
    let expired = false;
    for (const el of document.querySelectorAll('[data-deadline]')) {
      const left = parseTime(el.dataset.deadline) - now;
      if (left <= 0) {
        expired = true;
        el.textContent = t('ord_expired');
        el.removeAttribute('data-deadline');
      } else el.textContent = t('pay_within', duration(left));
    }
    // A Pay outside the list (the dialog's) goes at the deadline too.
    for (const b of document.querySelectorAll('[data-pay-until]')) {
      if (parseTime(b.dataset.payUntil) <= now) {
        b.remove();
        expired = true;
      }
    }
    if (expired) renderOrders();
    if (moved) {
      renderSales();
      loadSales();
    }
  }

  // tickLoop runs tick just after each second of server time turns, so
  // the countdowns change together with the server's seconds.
  function tickLoop() {
    tick();
    setTimeout(tickLoop, 1000 - (((serverNow() % 1000) + 1000) % 1000) + 5);
  }

  // ---- buying ------------------------------------------------------------

  function setBuyStatus(text, kind = '') {
    const el = $('#buy-status');
    if (state.buy && state.buy.stopCountdown) {
      state.buy.stopCountdown();
      state.buy.stopCountdown = null;
    }
    el.textContent = text;
    el.className = `status ${kind}`;
  }

  // openBuy opens the dialog for a sale. The purchase in it is state.buy:
  // {sale, run, captchaId, phase: 'form' | 'waiting' | 'done', busy, waitUntil}.
  function openBuy(sale) {
    if (!state.me) {
      state.resumeBuy = sale.id;
      toast(t('login_to_buy'), 'warn');
      showAuth('login');
      return;
    }
    if (!buyable(sale)) return;
    state.buy = { sale, run: {}, captchaId: '', phase: 'form', busy: false, waitUntil: 0, stopCountdown: null };
    $('#buy-title').textContent = sale.name;
    $('#buy-price').textContent = t('one_per_person', money(sale.price_cents));
    $('#buy-order').replaceChildren();
    delete $('#buy-order').dataset.order; // the last purchase's order
    delete $('#buy-status').dataset.result; // and its result
    $('#captcha-box').hidden = !sale.require_captcha;
    $('#captcha-answer').value = '';
    $('#buy-submit').textContent = sale.require_captcha ? t('submit_and_buy') : t('buy_now');
    setBuyStatus('');
    syncDialog();
    const dlg = $('#buy-dialog');
    if (!dlg.open) dlg.showModal();
    raiseToast();
    if (sale.require_captcha) loadCaptcha();
    else $('#buy-submit').focus();
  }

  // syncDialog sets the dialog's Buy button from the state of the sale and
  // of the connection: off while a request is out, during a rate limit's
  // wait, offline, and once the sale cannot be bought.
  function syncDialog() {
    const b = state.buy;
    if (!b) return;
    const submit = $('#buy-submit');
    const s = saleById(b.sale.id) || b.sale;
    const status = effectiveStatus(s, serverNow());
    if (b.phase === 'form' && (status === 'sold_out' || status === 'ended')) {
      b.phase = 'done';
      b.soldOut = status === 'sold_out';
      setBuyStatus(t(status === 'sold_out' ? 'err_sold_out' : 'err_ended'), 'bad');
      $('#captcha-box').hidden = true;
    } else if (b.phase === 'done' && b.soldOut && status === 'active') {
      // A unit came back (a cancel, an unpaid order's deadline): the
      // dialog offers it again, as the card behind it does.
      // The question shown before stays: a unit that comes and goes
      // must not spend the buyer's questions (20 flaps used them up).
      b.phase = 'form';
      b.soldOut = false;
      setBuyStatus('');
      // A path kept needs no answer; a question past its lifetime (a unit
      // back at an unpaid order's deadline, minutes later) is replaced.
      $('#captcha-box').hidden = !b.sale.require_captcha || !!keptPath(b);
      if (b.sale.require_captcha && !keptPath(b) && (!$('#captcha-img').dataset.captchaId || !(serverNow() < b.captchaExpires - 5000))) loadCaptcha();
    }
    // The page's banner is behind the dialog's backdrop: the dialog says
    // why its Buy is off.
    $('#buy-offline').hidden = net.online || b.phase === 'done';
    submit.hidden = b.phase !== 'form';
    submit.disabled = b.phase !== 'form' || b.busy || b.captchaLoading || !net.online || Date.now() < b.waitUntil || status !== 'active';
  }

  function closeBuy() {
    const b = state.buy;
    if (b) {
      b.run.cancelled = true;
      if (b.stopCountdown) b.stopCountdown();
    }
    state.buy = null;
    const dlg = $('#buy-dialog');
    if (dlg.open) dlg.close();
    // The card's stock moved while the dialog was open.
    if (b) refreshSale(b.sale.id);
  }

  // loadCaptcha asks for a new question. keep (the New button) leaves the
  // question shown until the new one is there, and keeps it if the server
  // refuses a new one (too many asked: "answer the one you have"); otherwise
  // the question shown is spent (answered, or the server forgot it) and
  // goes at once.
  async function loadCaptcha(keep) {
    const b = state.buy;
    if (!b || b.captchaAsking) return; // one ask at a time: a double click asks once
    b.captchaAsking = true;
    try {
      await askCaptcha(b, keep);
    } finally {
      b.captchaAsking = false;
    }
  }

  async function askCaptcha(b, keep) {
    const img = $('#captcha-img');
    const kept = keep === true && img.dataset.captchaId;
    if (!kept) {
      img.removeAttribute('src');
      img.removeAttribute('data-captcha-id');
      b.captchaLoading = true; // no question to answer yet: Buy waits
      syncDialog();
    }
    const r = await api('GET', `/api/sales/${encodeURIComponent(b.sale.id)}/captcha`);
    if (state.buy !== b) return;
    b.captchaLoading = false;
    syncDialog();
    if (!r.ok && kept && img.dataset.captchaId === kept && r.status === 429) {
      setBuyStatus(t('captcha_keep'), 'warn');
      return;
    }
    if (!r.ok) {
      img.removeAttribute('src');
      img.removeAttribute('data-captcha-id');
      // A wait named (429, 503) counts down, then asks again.
      if (mustWait(r)) waitAndRetry(b, r, loadCaptcha);
      else setBuyStatus(errText(r), 'bad');
      return;
    }
    const src = String(r.data.image || '');
    if (!src.startsWith('data:image/png;base64,')) {
      setBuyStatus(t('bad_image'), 'bad');
      return;
    }
    b.captchaId = r.data.captcha_id;
    b.captchaExpires = parseTime(r.data.expires_at);
    $('#buy-submit').textContent = t('submit_and_buy');
    img.src = src;
    img.dataset.captchaId = b.captchaId; // what the answer is checked against
    $('#captcha-answer').value = '';
    $('#captcha-answer').focus();
  }

  // mustWait tells a refusal that names a wait.
  const mustWait = (r) => r.status === 429 || r.status === 503;

  // waitAndRetry shows a refusal that names a wait (429, 503) as a
  // countdown and keeps Buy off until it ends; then it calls then (a
  // captcha sale loads a new question only once the wait is over: one
  // asked for now would be refused too, and stop the countdown).
  function waitAndRetry(b, r, then) {
    const secs = retrySeconds(r);
    setBuyStatus('', 'warn');
    b.waitUntil = Date.now() + secs * 1000;
    b.stopCountdown = countdownMessage($('#buy-status'), r.error.code === 'busy' ? 'err_busy' : 'err_rate_limited', secs, () => {
      b.stopCountdown = null;
      syncDialog();
      if (then && state.buy === b && b.phase === 'form') then();
    });
    syncDialog();
  }

  // refused shows why the path or the purchase was refused and what it
  // changes: a sold-out sale's Buy goes off, a duplicate shows what the
  // buyer holds.
  function refused(b, r) {
    const code = r.error.code;
    if (mustWait(r)) return waitAndRetry(b, r, b.sale.require_captcha && !keptPath(b) ? loadCaptcha : null);
    setBuyStatus(errText(r), code === 'duplicate' ? 'warn' : 'bad');
    if (code === 'sold_out') {
      markSoldOut(b.sale.id);
    } else if (code === 'duplicate') {
      b.phase = 'done';
      $('#captcha-box').hidden = true;
      if (!state.held.has(String(b.sale.id))) state.held.set(String(b.sale.id), 'queued');
      renderSales();
      loadOrders();
    } else if (code === 'ended' || code === 'not_started') {
      loadSales();
    }
  }

  // earnPath asks for b's purchase path with the captcha answer, keeps it
  // on b, and returns it; '' when there is none (refused, or the dialog
  // moved on), the reason shown.
  async function earnPath(b, id) {
    let body = {};
    if (b.sale.require_captcha) {
      const answer = $('#captcha-answer').value.trim();
      if (!answer) {
        setBuyStatus(t('type_answer'), 'warn');
        return '';
      }
      body = { captcha_id: b.captchaId, answer };
    }
    setBuyStatus(t('checking'));
    const p = await api('POST', `/api/sales/${id}/path`, body);
    // Answered, the question is spent (a path's refusal loads another).
    if (b.sale.require_captcha && p.status !== 0) $('#captcha-img').removeAttribute('data-captcha-id');
    // A push may have shown the sale sold out or ended meanwhile.
    if (state.buy !== b || b.phase !== 'form') return '';
    if (!p.ok) {
      refused(b, p);
      // A captcha is single use: whatever went wrong, show a fresh one.
      if (b.sale.require_captcha && b.phase === 'form' && p.status !== 0 && !mustWait(p)) loadCaptcha();
      return '';
    }
    const path = (p.data && p.data.path) || '';
    b.path = { path, expires: parseTime(p.data && p.data.expires_at) };
    return path;
  }

  // keptPath is b's purchase path earned before, while it has more than
  // 2 s to live by the server's clock, or ''.
  function keptPath(b) {
    return b.path && serverNow() < b.path.expires - 2000 ? b.path.path : '';
  }

  async function buy() {
    const b = state.buy;
    if (!b || b.phase !== 'form' || b.busy) return;
    const id = encodeURIComponent(b.sale.id);
    b.busy = true;
    syncDialog();
    try {
      // 1. The hidden purchase path, earned with the captcha answer; one
      // earned before and refused only for a wait (429, 503 on the
      // purchase) is used again while it lives: a retry must not spend a
      // question (twenty busy answers used up the supply).
      const path = keptPath(b) || await earnPath(b, id);
      if (!path) return;

      // 2. The purchase itself. Its result may be pushed before the 202
      // arrives: the last one is forgotten first, not after.
      setBuyStatus(t('placing'));
      const key = String(b.sale.id);
      results.delete(key);
      placed.set(key, null);
      earlyFailures.delete(key);
      const q = await api('POST', `/api/sales/${id}/purchase/${encodeURIComponent(path)}`);
      const heldBack = earlyFailures.get(key);
      earlyFailures.delete(key);
      if (q.status === 202) {
        const ticket = (q.data && q.data.ticket) || '';
        placed.set(key, ticket);
        if (heldBack && heldBack.has(ticket)) noteResult(b.sale.id, heldBack.get(ticket));
      } else {
        placed.delete(key);
      }
      if (state.buy !== b) return;
      if (q.status !== 202) {
        // Only a wait keeps the path (and an answer lost on the way: a
        // retry with it is answered duplicate if it went through).
        if (!mustWait(q) && q.status !== 0) b.path = null;
        refused(b, q);
        if (b.sale.require_captcha && b.phase === 'form' && q.status !== 0 && !mustWait(q)) loadCaptcha();
        else if (keptPath(b)) {
          // Nothing to answer on the retry.
          $('#captcha-box').hidden = true;
          $('#buy-submit').textContent = t('buy_now');
        }
        return;
      }
      b.path = null;
      b.phase = 'waiting';
      $('#captcha-box').hidden = true;
      syncDialog();
      const early = results.get(String(b.sale.id));
      if (early) {
        // Pushed while the 202 was on its way.
        showResult(b, early);
        return;
      }
      setBuyStatus(t('queued'), 'ok');
      state.held.set(String(b.sale.id), 'queued');
      renderSales();

      // 3. Wait for the result: pushed, or polled.
      await awaitResult(b);
    } finally {
      b.busy = false;
      if (state.buy === b) syncDialog();
    }
  }

  // awaitResult waits for the final result of b's purchase: noteResult
  // shows it whether the socket or a poll brings it. Without a socket it
  // polls every 0.5 s, with one every 3 s (not at all under NO_POLL).
  async function awaitResult(b) {
    const saleId = b.sale.id;
    const deadline = Date.now() + 120000;
    while (!b.run.cancelled && Date.now() < deadline && !results.has(String(saleId))) {
      if (!NO_POLL) {
        const r = await pollOnce(saleId);
        if (b.run.cancelled || state.buy !== b || results.has(String(saleId))) return;
        if (r.status === 401) {
          setBuyStatus(t('session_ended'), 'bad');
          return;
        }
      }
      await waitResult(saleId, NO_POLL ? deadline - Date.now() : push.open ? 3000 : 500);
    }
    if (!b.run.cancelled && state.buy === b && !results.has(String(saleId))) setBuyStatus(t('still_waiting'), 'warn');
  }

  // showResult shows a final result in b's dialog.
  function showResult(b, res) {
    b.phase = 'done';
    syncDialog();
    // Buy is gone from the dialog: the keyboard focus stays in it.
    if (state.buy === b) $('#buy-close').focus();
    if (res.status === 'success') {
      setBuyStatus(t('success_pay'), 'ok');
      $('#buy-status').dataset.result = 'success';
      showOrder(res.order_id);
      loadSales();
      return;
    }
    const why = res.reason && TEXT[`err_${res.reason}`] ? ` ${t(`err_${res.reason}`)}` : '';
    setBuyStatus(t('failed') + why, 'bad');
    $('#buy-status').dataset.result = 'failed';
    loadSales();
  }

  // showOrder shows the order a purchase made in the dialog, with Pay
  // while it can be paid; an order_status push shows it again.
  async function showOrder(orderId) {
    const box = $('#buy-order');
    if (orderId === undefined || orderId === null) return;
    box.dataset.order = String(orderId);
    const r = await api('GET', `/api/orders/${encodeURIComponent(orderId)}`);
    if (box.dataset.order !== String(orderId)) return; // the dialog moved on
    if (!r.ok) {
      box.replaceChildren(h('p', {}, `#${orderId}`));
      return;
    }
    const o = r.data.order;
    const live = payable(o);
    box.replaceChildren(h('dl', { className: 'stats' },
      h('dt', {}, t('col_order')), h('dd', {}, o.order_no || `#${o.id}`),
      h('dt', {}, t('col_price')), h('dd', {}, money(o.price_cents)),
      h('dt', {}, t('col_status')), h('dd', { 'data-order-status': o.status }, orderStatusText(o)),
      live ? [h('dt', {}, t('col_deadline')), h('dd', { 'data-deadline': o.pay_deadline }, t('pay_within', duration(parseTime(o.pay_deadline) - serverNow())))] : null),
    live ? h('button', {
      type: 'button', className: 'primary', 'data-pay': o.id, 'data-pay-until': o.pay_deadline,
      onclick: (ev) => pay(o.id, ev.currentTarget),
    }, t('pay_now')) : null);
  }

  function setupBuy() {
    $('#buy-form').addEventListener('submit', (ev) => { ev.preventDefault(); buy(); });
    $('#buy-close').addEventListener('click', closeBuy);
    // Escape closes the dialog without Close. The event comes a task after
    // close(), maybe after the dialog opened again for the next sale: then
    // it is not this purchase's to end.
    $('#buy-dialog').addEventListener('close', () => { if (state.buy && !$('#buy-dialog').open) closeBuy(); });
    $('#captcha-refresh').addEventListener('click', () => { setBuyStatus(''); loadCaptcha(true); });
  }

  // ---- orders ------------------------------------------------------------

  // payable reports whether an order can still be paid: awaiting payment
  // and before its deadline by the server's clock.
  // A pending order the server refused to open a payment for (its
  // payment is closed at the provider) is not offered Pay again: it waits
  // for its deadline, as its unit does.
  const payable = (o) => o.status === 'pending_payment' && !(parseTime(o.pay_deadline) <= serverNow()) &&
    !state.payClosed.has(String(o.id));

  function orderStatusText(o) {
    if (o.status === 'pending_payment' && state.payClosed.has(String(o.id))) return t('ord_pay_closed');
    if (o.status === 'pending_payment' && !payable(o)) return t('ord_expired');
    return TEXT[`ord_${o.status}`] ? t(`ord_${o.status}`) : o.status;
  }

  // An order only moves forward (pending_payment -> paid | cancelled,
  // paid -> refunded), so of two views of one order the one further on is
  // the newer: a list that left before a push arrived must not take the
  // pushed status back.
  const ORDER_STEP = { pending_payment: 0, paid: 1, cancelled: 1, refunded: 2 };
  const behind = (o, status) => (ORDER_STEP[o.status] ?? -1) < (ORDER_STEP[status] ?? -1);

  async function loadOrders() {
    if (!state.me) return;
    const r = await api('GET', '/api/orders');
    if (!state.me) return;
    if (!r.ok) {
      if (r.status !== 0) $('#orders').replaceChildren(h('p', { className: 'error' }, errText(r)));
      return;
    }
    const known = new Map(state.orders.map((o) => [String(o.id), o]));
    state.orders = (r.data.orders || []).map((o) => {
      const k = known.get(String(o.id));
      return k && behind(o, k.status) ? k : o;
    });
    // What the buyer holds: an order per sale; a purchase still queued
    // (noted from a 202 or a duplicate) stays until its order shows.
    for (const [k, v] of [...state.held]) if (v !== 'queued') state.held.delete(k);
    for (const o of state.orders) state.held.set(String(o.sale_id), o.status);
    renderOrders();
    renderSales();
    if (state.returnedFrom !== null) showReturn();
  }

  // putOrder puts a newer view of one order (an answer of the API) into
  // the list.
  function putOrder(o) {
    const i = state.orders.findIndex((x) => String(x.id) === String(o.id));
    if (i < 0) return loadOrders();
    if (behind(o, state.orders[i].status)) return;
    state.orders[i] = o;
    state.held.set(String(o.sale_id), o.status);
    renderOrders();
    renderSales();
  }

  // noteOrderStatus applies an order_status push ({order_id, status}) at
  // once. A paid or refunded order's times are then read once; a cancelled
  // order's unit is back on sale, so its sale's card is read again.
  async function noteOrderStatus(m) {
    const id = String(m.order_id);
    const o = state.orders.find((x) => String(x.id) === id);
    if (!o) return loadOrders();
    if (!behind(o, m.status)) return;
    o.status = m.status;
    state.held.set(String(o.sale_id), o.status);
    renderOrders();
    renderSales();
    if ($('#buy-order').dataset.order === id) showOrder(id);
    if (m.status === 'paid') toast(t('pay_done', o.order_no || `#${o.id}`), 'ok');
    if (m.status === 'cancelled') refreshSale(o.sale_id);
    else {
      const r = await api('GET', `/api/orders/${encodeURIComponent(id)}`);
      if (r.ok && r.data.order) putOrder(r.data.order);
    }
  }

  function renderOrders() {
    const box = $('#orders');
    const orders = state.orders;
    if (!orders.length) {
      box.replaceChildren(h('p', { className: 'muted' }, t('no_orders')));
      return;
    }
    const names = new Map(state.sales.map((s) => [s.id, s.name]));
    const cols = ['col_order', 'col_sale', 'col_price', 'col_status', 'col_created', 'col_deadline'];
    keepFocus(box, () => box.replaceChildren(h('table', { className: 'orders' },
      h('thead', {}, h('tr', {}, cols.map((c) => h('th', {}, t(c))), h('th', { 'aria-label': t('col_actions') }))),
      h('tbody', {}, orders.map((o) => {
        const live = payable(o);
        const badge = o.status === 'pending_payment' && !live ? 'expired' : o.status;
        return h('tr', { 'data-order': o.id, 'data-status': badge, className: String(o.id) === state.returnedOrder ? 'returned' : '' },
          h('td', { 'data-label': t('col_order') }, o.order_no || `#${o.id}`),
          h('td', { 'data-label': t('col_sale') }, names.get(o.sale_id) || `#${o.sale_id}`),
          h('td', { 'data-label': t('col_price') }, money(o.price_cents)),
          h('td', { 'data-label': t('col_status') }, h('span', { className: `badge ${badge}` }, orderStatusText(o))),
          h('td', { 'data-label': t('col_created') }, when(o.created_at)),
          h('td', { 'data-label': t('col_deadline') }, o.paid_at ? when(o.paid_at)
            : live ? h('span', { 'data-deadline': o.pay_deadline }, t('pay_within', duration(parseTime(o.pay_deadline) - serverNow()))) : '–'),
          // Past the deadline neither is offered: the order is being
          // cancelled, and its unit goes back on sale.
          h('td', { className: 'actions' }, live ? [
            h('button', { type: 'button', className: 'small primary', 'data-pay': o.id, onclick: (ev) => pay(o.id, ev.currentTarget) }, t('pay')),
            h('button', { type: 'button', className: 'small', 'data-cancel': o.id, onclick: (ev) => cancelOrder(o, ev.currentTarget) }, t('cancel')),
          ] : null));
      })))));
  }

  // pay asks for a payment of the order and takes this tab to the
  // provider's page; its return URL brings the buyer back to this page,
  // which then shows the orders (showReturn). The order turns paid when
  // the provider's notification reaches the server, which pushes it.
  async function pay(orderId, btn) {
    if (btn) btn.disabled = true;
    const r = await api('POST', `/api/orders/${encodeURIComponent(orderId)}/pay`);
    if (!r.ok) {
      if (btn) btn.disabled = false;
      toast(errText(r), 'bad');
      if (r.error.code === 'not_payable') {
        state.payClosed.add(String(orderId));
        loadOrders();
      }
      return;
    }
    const url = safeURL(r.data.pay_url);
    if (!url) {
      if (btn) btn.disabled = false;
      toast(t('pay_url_bad'), 'bad');
      return;
    }
    try { sessionStorage.setItem(PAYING_KEY, String(orderId)); } catch { /* storage off: the page still loads the orders */ }
    location.assign(url);
  }

  // returnFromPayment notes, at start, that this tab comes back from a
  // provider's page (the order id this tab left with, or the provider's
  // return fields in the address), and takes those fields out of the
  // address: they prove nothing (only the notification does) and would
  // be shown again on a reload.
  function returnFromPayment() {
    let id = null;
    try {
      id = sessionStorage.getItem(PAYING_KEY);
      sessionStorage.removeItem(PAYING_KEY);
    } catch { /* storage off */ }
    const q = new URLSearchParams(location.search);
    if (q.has('out_trade_no')) {
      history.replaceState(null, '', location.pathname + (NO_POLL ? '?nopoll' : ''));
      if (id === null) id = '';
    }
    state.returnedFrom = id;
  }

  // showReturn brings the orders into view once they have loaded after a
  // return from the payment page, marking the order paid for.
  function showReturn() {
    const id = state.returnedFrom;
    state.returnedFrom = null;
    const o = state.orders.find((x) => String(x.id) === id);
    if (o) {
      state.returnedOrder = id;
      renderOrders();
    }
    const row = o ? document.querySelector(`#orders tr[data-order="${CSS.escape(id)}"]`) : null;
    (row || $('#orders-section')).scrollIntoView({ block: 'start' });
    // The notification may have come before the buyer did.
    if (o && o.status === 'paid') toast(t('pay_done', o.order_no || `#${o.id}`), 'ok');
    else if (o && o.status !== 'pending_payment') toast(t('pay_returned_gone', orderStatusText(o)), 'warn');
    else toast(t('pay_returned'), 'info');
  }

  // ask shows question in the confirmation dialog and resolves to whether
  // the buyer chose yes (Escape and the other button say no).
  function ask(question, yes, no) {
    const dlg = $('#confirm-dialog');
    if (dlg.open) return Promise.resolve(false); // another question is open
    $('#confirm-text').textContent = question;
    $('#confirm-yes').textContent = yes;
    $('#confirm-no').textContent = no;
    dlg.returnValue = '';
    return new Promise((resolve) => {
      dlg.addEventListener('close', () => resolve(dlg.returnValue === 'yes'), { once: true });
      dlg.showModal();
      raiseToast();
      $('#confirm-no').focus();
    });
  }

  // cancelOrder cancels an order the buyer confirms giving up; its unit
  // goes back on sale, which the sale's card shows.
  async function cancelOrder(o, btn) {
    if (!(await ask(t('cancel_confirm', o.order_no || `#${o.id}`), t('cancel_order'), t('keep_order')))) return;
    if (btn) btn.disabled = true;
    const r = await api('POST', `/api/orders/${encodeURIComponent(o.id)}/cancel`);
    if (!r.ok) {
      if (btn) btn.disabled = false;
      toast(errText(r), 'bad');
      if (r.error.code === 'not_cancellable') loadOrders();
      return;
    }
    toast(t('order_cancelled'));
    // The push says the same; the answer is here first.
    if (r.data && r.data.order) putOrder(r.data.order);
    refreshSale(o.sale_id);
  }

  // ---- admin -------------------------------------------------------------

  function localInput(d) {
    const p = (n) => String(n).padStart(2, '0');
    return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
  }

  // rfc3339 turns a datetime-local value (local time) into RFC 3339 UTC.
  function rfc3339(v) {
    const d = new Date(v);
    return Number.isNaN(d.getTime()) ? null : d.toISOString().replace(/\.\d{3}Z$/, 'Z');
  }

  function setupAdmin() {
    const f = $('#sale-form');
    $('#quick-times').addEventListener('click', () => {
      // Server time, shown in local time: the form means what the server will.
      const start = new Date(Math.ceil((serverNow() + 60000) / 1000) * 1000);
      f.starts_at.value = localInput(start);
      f.ends_at.value = localInput(new Date(start.getTime() + 3600000));
    });
    // An error is about the values it was given: a change clears it (the
    // browser's own checks refuse a submit without running the handler).
    f.addEventListener('input', () => formError(f, ''));
    f.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      formError(f, '');
      const price = parseCents(f.price.value);
      const orig = parseCents(f.original_price.value);
      const starts = rfc3339(f.starts_at.value);
      const ends = rfc3339(f.ends_at.value);
      if (price === null || orig === null) return formError(f, t('adm_bad_price'));
      if (orig > 0 && price > orig) return formError(f, t('adm_above', money(price), money(orig)));
      if (!starts || !ends) return formError(f, t('adm_times'));
      if (parseTime(ends) <= serverNow()) return formError(f, t('adm_past'));
      const body = {
        name: f.name.value.trim(),
        description: f.description.value.trim(),
        image_url: f.image_url.value.trim(),
        price_cents: price,
        original_price_cents: orig,
        stock: Number(f.stock.value),
        starts_at: starts,
        ends_at: ends,
        require_captcha: f.require_captcha.checked,
      };
      const r = await api('POST', '/api/admin/sales', body);
      // The server's own words say which field is wrong.
      if (!r.ok) return formError(f, r.error.code === 'invalid' && r.error.message ? r.error.message : errText(r));
      toast(t('adm_created', r.data.sale.name), 'ok');
      f.reset();
      await loadSales();
      loadDashboard();
      showStats(r.data.sale.id);
    });
  }

  // ---- dashboard ----------------------------------------------------------
  //
  // Every sale with its state, units left, admin stats, a sell-through chart
  // (units sold over time) and, over the last minutes, admissions, orders
  // and refusals by reason per second, drawn on canvases. The numbers come
  // from GET /api/admin/dashboard once (the whole window), then streamed
  // every second on the admin's socket (GET /api/admin/ws, {"type":"dash"}
  // with each series' last seconds, merged in by second). Only while that
  // socket is down does the page poll the dashboard every 2 s, and it says so.

  const dash = {
    data: new Map(),    // sale id -> last DashSale (state, left, stats)
    traffic: new Map(), // sale id -> Map(unix second -> {a, o, r: {code: n}})
    series: new Map(),  // sale id -> [{t, sold}] (server time ms, units sold)
    window: 300,        // seconds the server keeps (window_seconds)
    mode: 'off',        // 'connecting' | 'stream' | 'poll'
    pollTimer: 0,
    graceTimer: 0,
    loading: false,
    pinned: new Set(),  // ids of ended sales whose row the admin asked for (Stats)
  };
  const SERIES_MS = 15 * 60 * 1000; // the sell-through chart's window
  // A sale that ended longer ago than this has no dashboard row unless
  // asked for: with dozens of past sales, every row and its three charts
  // drawn each second kept a core busy (review: 59 sales, 93 %).
  const DASH_ENDED_MS = 60 * 60 * 1000;
  const isAdmin = () => !!(state.me && state.me.role === 'admin');

  // REFUSALS are the refusal reasons the server counts, with their colours.
  const REFUSALS = [
    ['sold_out', '#e4393c'], ['duplicate', '#f39c12'], ['rate_limited', '#8e44ad'], ['busy', '#7f8c8d'],
    ['bad_captcha', '#16a085'], ['bad_path', '#2c3e50'], ['not_started', '#c0a16b'], ['ended', '#95a5a6'], ['other', '#bdc3c7'],
  ];
  const ADMIT_COLOR = '#1f9d55';
  const ORDER_COLOR = '#3b55b5';

  // noteSold records a sample of the sale's units sold: on a change, or
  // every 2 s, so that the chart's line runs on while nothing sells.
  function noteSold(s) {
    if (!isAdmin() || !s) return;
    const key = String(s.id);
    const sold = Math.max(0, (Number(s.stock) || 0) - Math.max(0, Number(s.stock_left) || 0));
    const now = serverNow();
    const pts = dash.series.get(key) || [];
    const last = pts[pts.length - 1];
    if (last && last.sold === sold && now - last.t < 2000) return;
    pts.push({ t: now, sold });
    while (pts.length > 2 && now - pts[0].t > SERIES_MS) pts.shift();
    dash.series.set(key, pts);
  }

  // setDashMode shows how the dashboard gets its numbers.
  function setDashMode(mode) {
    dash.mode = mode;
    const el = $('#dash-mode');
    el.dataset.mode = mode;
    el.textContent = mode === 'stream' ? t('dash_live') : mode === 'poll' ? t('dash_poll') : mode === 'connecting' ? t('dash_connecting') : '';
    clearInterval(dash.pollTimer);
    dash.pollTimer = 0;
    if (mode === 'poll') dash.pollTimer = setInterval(() => { if (!document.hidden && net.online) loadDashboard(); }, 2000);
  }

  // dashSync starts or stops the dashboard with the admin's session.
  function dashSync() {
    clearTimeout(dash.graceTimer);
    if (!isAdmin()) {
      setDashMode('off');
      dash.data.clear();
      dash.traffic.clear();
      dash.series.clear();
      return;
    }
    if (dash.mode !== 'off') return;
    setDashMode(push.open ? 'stream' : 'connecting');
    loadDashboard();
    // A socket that does not open soon: poll meanwhile.
    dash.graceTimer = setTimeout(() => { if (isAdmin() && !push.open) setDashMode('poll'); }, 3000);
  }

  // dashStream follows the admin's socket: streamed while it is open,
  // polled while it is down.
  function dashStream(open) {
    if (!isAdmin()) return;
    clearTimeout(dash.graceTimer);
    if (open) {
      const wasPolling = dash.mode === 'poll';
      setDashMode('stream');
      // The tails cover a few seconds: after a longer gap read the window.
      if (wasPolling) loadDashboard();
    } else if (dash.mode !== 'poll') {
      setDashMode('poll');
    }
  }

  // loadDashboard reads the whole dashboard (GET /api/admin/dashboard).
  async function loadDashboard() {
    if (!isAdmin() || dash.loading) return;
    dash.loading = true;
    let r;
    try {
      r = await api('GET', '/api/admin/dashboard');
    } finally {
      dash.loading = false;
    }
    if (!r.ok) {
      $('#dash-error').textContent = errText(r);
      return;
    }
    $('#dash-error').textContent = '';
    noteDash(r.data);
  }

  // noteDash merges a dashboard (read or streamed) into what the page
  // shows: each second of a series replaces what the page had for it.
  function noteDash(m) {
    if (!isAdmin() || !m || !Array.isArray(m.sales)) return;
    if (m.window_seconds > 0) dash.window = m.window_seconds;
    let newest = 0;
    for (const d of m.sales) {
      const key = String(d.sale_id);
      dash.data.set(key, d);
      const s = saleById(d.sale_id);
      if (s && typeof d.left === 'number') {
        s.stock_left = d.left;
        noteSold(s);
      }
      const sr = d.series || {};
      const secs = dash.traffic.get(key) || new Map();
      const n = (sr.admitted || []).length;
      for (let i = 0; i < n; i++) {
        const r = {};
        for (const [code, xs] of Object.entries(sr.refused || {})) if (xs[i]) r[code] = xs[i];
        secs.set(sr.start + i, { a: sr.admitted[i] || 0, o: (sr.orders || [])[i] || 0, r });
      }
      newest = Math.max(newest, sr.start + n - 1);
      dash.traffic.set(key, secs);
    }
    for (const secs of dash.traffic.values()) {
      for (const sec of secs.keys()) if (sec <= newest - dash.window) secs.delete(sec);
    }
    dash.newest = newest;
    // A sale created elsewhere shows up here before the list is read again.
    if (m.sales.some((d) => !saleById(d.sale_id))) loadSales();
    renderDashboard();
  }

  function showStats(id) {
    if (!dash.pinned.has(String(id))) {
      dash.pinned.add(String(id));
      renderDashboard();
    }
    const row = document.querySelector(`[data-dash="${CSS.escape(String(id))}"]`);
    (row || $('#dashboard')).scrollIntoView({ behavior: 'smooth', block: 'nearest' });
  }

  const DASH_STATS = ['orders', 'pending_payment', 'paid', 'cancelled', 'refunded', 'queued', 'refunds_due', 'gate_left', 'sql_stock_left']
    .map((k) => [k, t(`st_${k}`)]);

  // trafficTotals sums a sale's seconds in the window.
  function trafficTotals(secs) {
    const tot = { a: 0, o: 0, r: {}, refused: 0, peak: 0 };
    for (const v of secs.values()) {
      tot.a += v.a;
      tot.o += v.o;
      tot.peak = Math.max(tot.peak, v.o);
      for (const [code, n] of Object.entries(v.r)) {
        tot.r[code] = (tot.r[code] || 0) + n;
        tot.refused += n;
      }
    }
    return tot;
  }

  function renderDashboard() {
    if (!isAdmin()) return;
    const box = $('#dash-rows');
    if (!state.sales.length) {
      box.replaceChildren(h('p', { className: 'muted' }, t('no_sales')));
      return;
    }
    const now = serverNow();
    const newest = dash.newest || Math.floor(now / 1000);
    const mins = Math.round(dash.window / 60);
    const shown = salesInOrder(now).filter((s) => effectiveStatus(s, now) !== 'ended' ||
      now - parseTime(s.ends_at) < DASH_ENDED_MS || dash.pinned.has(String(s.id)));
    const hidden = state.sales.length - shown.length;
    const more = hidden ? h('p', { className: 'muted', 'data-dash-hidden': hidden }, t('dash_hidden', hidden)) : null;
    keepFocus(box, () => box.replaceChildren(...shown.map((s) => {
      const key = String(s.id);
      const status = effectiveStatus(s, now);
      const d = dash.data.get(key) || {};
      const st = d.stats || {};
      const left = Math.max(0, Number(s.stock_left) || 0);
      const secs = dash.traffic.get(key) || new Map();
      const tot = trafficTotals(secs);
      const sold = h('canvas', { className: 'chart', width: 320, height: 64, 'aria-label': t('dash_sold_chart'), 'data-chart': 'sold' });
      const flow = h('canvas', { className: 'chart', width: 320, height: 88, 'aria-label': t('dash_flow_chart', mins), 'data-chart': 'flow' });
      const refusals = h('canvas', { className: 'chart', width: 320, height: 48, 'aria-label': t('dash_refused_chart', mins), 'data-chart': 'refused' });
      const row = h('div', { className: 'dash-sale', 'data-dash': s.id, 'data-status': status },
        h('div', { className: 'card-top' },
          h('strong', {}, `#${s.id} ${s.name}`),
          h('span', { className: `badge ${status}` }, t(`st_${status}`))),
        h('div', { className: 'row' },
          h('span', { className: 'big', 'data-dash-left': s.id }, t('dash_left', left, s.stock)),
          status === 'ended' ? null : h('button', { type: 'button', className: 'small', 'data-stop': s.id, onclick: (ev) => stopSale(s, ev.target) }, t('adm_stop_now'))),
        h('dl', { className: 'stats' }, DASH_STATS.flatMap(([k, label]) => [
          h('dt', {}, label), h('dd', { 'data-stat': k }, st[k] === undefined || st[k] < 0 ? '–' : String(st[k]))])),
        h('p', { className: 'chart-title' }, t('dash_sell_through')),
        sold,
        h('p', { className: 'chart-title' }, t('dash_per_second', mins),
          h('span', {}, swatch(ADMIT_COLOR), t('dash_admitted'), h('b', { 'data-series': 'admitted' }, String(tot.a))),
          h('span', {}, swatch(ORDER_COLOR), t('dash_orders'), h('b', { 'data-series': 'orders' }, String(tot.o))),
          h('span', { className: 'muted' }, t('dash_peak'), h('b', { 'data-series': 'peak' }, String(tot.peak)), '/s')),
        flow,
        h('p', { className: 'chart-title' }, h('span', {}, t('dash_refused'), h('b', { 'data-series': 'refused' }, String(tot.refused))),
          ...REFUSALS.filter(([code]) => tot.r[code]).map(([code, c]) =>
            h('span', {}, swatch(c), `${code.replace('_', ' ')} `, h('b', { 'data-refused': code }, String(tot.r[code]))))),
        refusals);
      drawChart(sold, dash.series.get(key) || [], Number(s.stock) || 1, parseTime(s.starts_at), now);
      drawFlow(flow, secs, newest, dash.window);
      drawRefusals(refusals, secs, newest, dash.window);
      return row;
    }), ...(more ? [more] : [])));
  }

  // swatch is a chart's colour key.
  const swatch = (colour) => h('i', { className: 'swatch', style: { backgroundColor: colour } });

  // chartFrame clears a canvas and returns its context and size, or null.
  function chartFrame(canvas) {
    const ctx = canvas.getContext && canvas.getContext('2d');
    if (!ctx) return null;
    const w = canvas.width;
    const ht = canvas.height;
    ctx.clearRect(0, 0, w, ht);
    ctx.strokeStyle = '#e2e5eb';
    ctx.lineWidth = 1;
    ctx.strokeRect(0.5, 0.5, w - 1, ht - 1);
    return { ctx, w, ht, pad: 4 };
  }

  // drawFlow draws admissions (top lane, green) and orders (bottom lane,
  // blue) per second over the window ending at the second newest, each on
  // the scale of its busiest second.
  function drawFlow(canvas, secs, newest, window) {
    const f = chartFrame(canvas);
    if (!f) return;
    const { ctx, w, ht, pad } = f;
    const first = newest - window + 1;
    const bw = Math.max(2, (w - 2 * pad) / window);
    const lane = (ht - 2 * pad) / 2;
    ctx.font = '11px system-ui, sans-serif';
    [['a', ADMIT_COLOR, 'admitted'], ['o', ORDER_COLOR, 'orders']].forEach(([field, colour, label], i) => {
      const bottom = pad + lane * (i + 1);
      let top = 1;
      for (const v of secs.values()) top = Math.max(top, v[field]);
      ctx.fillStyle = colour;
      for (const [sec, v] of secs) {
        if (sec < first || !v[field]) continue;
        const bh = Math.max(1, ((lane - 12) * v[field]) / top);
        ctx.fillRect(pad + (sec - first) * ((w - 2 * pad) / window), bottom - bh, bw, bh);
      }
      ctx.fillStyle = '#6b7385';
      ctx.fillText(`${label} · max ${top}/s`, pad + 2, bottom - lane + 11);
    });
    ctx.strokeStyle = '#e2e5eb';
    ctx.beginPath();
    ctx.moveTo(pad, pad + lane + 0.5);
    ctx.lineTo(w - pad, pad + lane + 0.5);
    ctx.stroke();
  }

  // drawRefusals draws the refusals of each second as a bar stacked by
  // reason.
  function drawRefusals(canvas, secs, newest, window) {
    const f = chartFrame(canvas);
    if (!f) return;
    const { ctx, w, ht, pad } = f;
    const first = newest - window + 1;
    let top = 1;
    for (const v of secs.values()) top = Math.max(top, Object.values(v.r).reduce((a, b) => a + b, 0));
    const bw = Math.max(1, (w - 2 * pad) / window);
    for (const [sec, v] of secs) {
      if (sec < first) continue;
      let y0 = ht - pad;
      for (const [code, colour] of REFUSALS) {
        const n = v.r[code];
        if (!n) continue;
        const bh = ((ht - 2 * pad - 12) * n) / top;
        ctx.fillStyle = colour;
        ctx.fillRect(pad + (sec - first) * bw, y0 - bh, Math.ceil(bw), bh);
        y0 -= bh;
      }
    }
    ctx.fillStyle = '#6b7385';
    ctx.font = '11px system-ui, sans-serif';
    ctx.fillText(`max ${top}/s`, pad + 2, 13);
  }

  // drawChart draws units sold (0 … stock) as a step line from the sale's
  // start (at most SERIES_MS back, at least 10 s) to now, with the stock as
  // the top.
  function drawChart(canvas, pts, stock, start, now) {
    const f = chartFrame(canvas);
    if (!f || !pts.length) return;
    const { ctx, w, ht, pad } = f;
    let t0 = Math.max(now - SERIES_MS, Math.min(pts[0].t, Number.isNaN(start) ? pts[0].t : start));
    t0 = Math.min(t0, now - 10000);
    const x = (t) => pad + ((w - 2 * pad) * (t - t0)) / Math.max(1, now - t0);
    const y = (v) => ht - pad - ((ht - 2 * pad) * Math.min(v, stock)) / stock;
    ctx.strokeStyle = '#e4393c';
    ctx.lineWidth = 2;
    ctx.beginPath();
    ctx.moveTo(x(pts[0].t), y(pts[0].sold));
    for (let i = 1; i < pts.length; i++) {
      ctx.lineTo(x(pts[i].t), y(pts[i - 1].sold));
      ctx.lineTo(x(pts[i].t), y(pts[i].sold));
    }
    ctx.lineTo(x(now), y(pts[pts.length - 1].sold));
    ctx.stroke();
    ctx.fillStyle = '#6b7385';
    ctx.font = '11px system-ui, sans-serif';
    ctx.fillText(`${pts[pts.length - 1].sold} sold`, pad + 2, 13);
  }

  // stopSale ends a sale now, once the admin confirms.
  async function stopSale(s, btn) {
    if (!(await ask(t('adm_stop_q', s.name), t('adm_stop_yes'), t('adm_stop_no')))) return;
    if (btn) btn.disabled = true;
    const r = await api('POST', `/api/admin/sales/${encodeURIComponent(s.id)}/stop`);
    if (!r.ok) {
      if (btn) btn.disabled = false;
      toast(errText(r), 'bad');
      return;
    }
    const i = state.sales.findIndex((x) => String(x.id) === String(s.id));
    if (i >= 0) state.sales[i] = r.data.sale;
    noteServerTime(r.data.server_time, r.t0, r.t1);
    toast(t('adm_stopped', s.name), 'ok');
    renderSales();
    renderDashboard();
    syncDialog();
  }

  // ---- start -------------------------------------------------------------

  function start() {
    // The session is in the HttpOnly cookie alone; a token an earlier
    // version of this page stored is of no use and only exposed there.
    try { localStorage.removeItem(LEGACY_TOKEN_KEY); } catch { /* storage off */ }
    returnFromPayment();
    translatePage();
    setupAuth();
    setupBuy();
    setupAdmin();
    $('#orders-refresh').addEventListener('click', loadOrders);
    renderAccount();
    loadMe();
    loadSales();
    tickLoop();
    // Stock counts move during a sale, and each refresh samples the
    // server's clock again; refresh while the page is visible.
    setInterval(() => { if (!document.hidden && net.online) loadSales(); }, 5000);
  }

  start();
})();
