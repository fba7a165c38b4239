// seckill page: plain JavaScript against the JSON API (see api.md).
// Every piece of server text goes into the page through textContent or
// attributes, never parsed as HTML.
'use strict';

(() => {
  const TOKEN_KEY = 'seckill_token';

  const state = {
    me: null,              // GET /api/me, or null when logged out
    sales: [],             // last GET /api/sales
    salesLoaded: false,
    offsetMs: 0,           // server clock minus client clock
    cards: new Map(),      // sale id -> {sig, status, node}
    buy: null,             // the purchase in the dialog: {sale, run}
    statsTimer: 0,
  };

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

  const serverNow = () => Date.now() + state.offsetMs;

  function noteServerTime(s) {
    const t = Date.parse(s);
    if (!Number.isNaN(t)) state.offsetMs = t - Date.now();
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
    const t = Date.parse(s);
    if (!s || Number.isNaN(t)) return '–';
    return new Date(t).toLocaleString();
  }

  function duration(ms) {
    let s = Math.max(0, Math.ceil(ms / 1000));
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

  let toastTimer = 0;
  function toast(msg, kind = 'info') {
    const t = $('#toast');
    t.textContent = msg;
    t.className = `toast ${kind}`;
    t.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { t.hidden = true; }, 4000);
  }

  // ---- API ---------------------------------------------------------------

  // api calls the JSON API and resolves to {ok, status, data, error, retryAfter};
  // error is {code, message} from the error body (or made up for network
  // failures). It never rejects.
  async function api(method, url, body) {
    const headers = { Accept: 'application/json' };
    const token = localStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = `Bearer ${token}`;
    const init = { method, headers, credentials: 'same-origin' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(url, init);
    } catch {
      return { ok: false, status: 0, data: null, error: { code: 'network', message: 'Cannot reach the server.' } };
    }
    let data = null;
    if (res.status !== 204) {
      try { data = await res.json(); } catch { data = null; }
    }
    const out = { ok: res.ok, status: res.status, data, error: null, retryAfter: res.headers.get('Retry-After') };
    if (!res.ok) {
      const e = data && data.error;
      out.error = {
        code: (e && e.code) || `http_${res.status}`,
        message: (e && e.message) || `Request failed (${res.status}).`,
      };
      if (res.status === 401 && state.me && url !== '/api/sessions') loggedOut();
    }
    return out;
  }

  const errText = (r) => `${r.error.message}${r.error.code ? ` (${r.error.code})` : ''}`;

  // ---- push (GET /api/ws) --------------------------------------------------

  // While someone is logged in the page holds a WebSocket; the server pushes
  // the result of each purchase on it, and the dialog shows it at once.
  // Polling /result stays as the fallback (slower while the socket is
  // open), so a page whose socket cannot connect still gets its result. The
  // socket authenticates with the session cookie set at login.
  const push = {
    ws: null,
    open: false,
    retryMs: 0,
    timer: 0,
    waiters: new Map(), // sale id (string) -> function(message or null)
  };

  function pushConnect() {
    if (!state.me || push.ws || !('WebSocket' in window)) return;
    clearTimeout(push.timer);
    let ws;
    try {
      ws = new WebSocket(`${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/api/ws`);
    } catch {
      return;
    }
    push.ws = ws;
    ws.onopen = () => {
      push.open = true;
      push.retryMs = 0;
      // A result may have been pushed before this socket opened: whoever
      // waits polls once more.
      for (const wake of [...push.waiters.values()]) wake(null);
    };
    ws.onmessage = (ev) => {
      let m;
      try { m = JSON.parse(ev.data); } catch { return; }
      if (m.type === 'order_result') {
        const wake = push.waiters.get(String(m.sale_id));
        if (wake) wake(m);
      } else if (m.type === 'order_status') {
        loadOrders();
      }
    };
    ws.onclose = () => {
      if (push.ws !== ws) return;
      push.ws = null;
      push.open = false;
      if (!state.me) return;
      // Reconnect with backoff: the server restarted, or this session has
      // no cookie (polling carries on meanwhile).
      push.retryMs = Math.min(push.retryMs ? push.retryMs * 2 : 1000, 30000);
      push.timer = setTimeout(pushConnect, push.retryMs);
    };
  }

  function pushDisconnect() {
    clearTimeout(push.timer);
    push.retryMs = 0;
    const ws = push.ws;
    push.ws = null;
    push.open = false;
    if (ws) ws.close();
  }

  // nextPush resolves with the next result pushed for the sale, or with
  // null after ms (or when the socket opens).
  function nextPush(saleId, ms) {
    const key = String(saleId);
    return new Promise((resolve) => {
      const done = (m) => {
        clearTimeout(timer);
        if (push.waiters.get(key) === done) push.waiters.delete(key);
        resolve(m);
      };
      const timer = setTimeout(() => done(null), ms);
      push.waiters.set(key, done);
    });
  }

  // ---- account -----------------------------------------------------------

  async function loadMe() {
    const r = await api('GET', '/api/me');
    state.me = r.ok ? r.data : null;
    if (!r.ok && r.status === 401) localStorage.removeItem(TOKEN_KEY);
    renderAccount();
  }

  function loggedOut() {
    state.me = null;
    localStorage.removeItem(TOKEN_KEY);
    renderAccount();
  }

  function renderAccount() {
    const nav = $('#account');
    const me = state.me;
    if (me) {
      nav.replaceChildren(
        h('span', { className: 'who' },
          h('strong', {}, me.nickname || me.phone),
          me.role === 'admin' ? h('span', { className: 'badge admin' }, 'admin') : null),
        h('button', { type: 'button', className: 'small', onclick: logout }, 'Log out'),
      );
      $('#auth').hidden = true;
    } else {
      nav.replaceChildren(
        h('button', { type: 'button', className: 'small', onclick: () => showAuth('login') }, 'Log in'),
        h('button', { type: 'button', className: 'small primary', onclick: () => showAuth('register') }, 'Register'),
      );
    }
    $('#orders-section').hidden = !me;
    $('#admin-section').hidden = !(me && me.role === 'admin');
    if (me) pushConnect();
    else pushDisconnect();
    if (me) loadOrders();
    if (!(me && me.role === 'admin')) setStatsAuto(false);
    renderSales();
  }

  function showAuth(tab) {
    $('#auth').hidden = false;
    for (const b of document.querySelectorAll('#auth .tab')) b.classList.toggle('active', b.dataset.tab === tab);
    $('#login-form').hidden = tab !== 'login';
    $('#register-form').hidden = tab !== 'register';
    $(`#${tab}-form input`).focus();
  }

  async function login(phone, password) {
    const r = await api('POST', '/api/sessions', { phone, password });
    if (!r.ok) return r;
    localStorage.setItem(TOKEN_KEY, r.data.token);
    await loadMe();
    return r;
  }

  async function logout() {
    await api('DELETE', '/api/sessions');
    loggedOut();
    toast('Logged out.');
  }

  function formError(form, msg) {
    $('[data-error]', form).textContent = msg || '';
  }

  function setupAuth() {
    for (const b of document.querySelectorAll('#auth .tab')) b.addEventListener('click', () => showAuth(b.dataset.tab));
    for (const b of document.querySelectorAll('[data-close="auth"]')) b.addEventListener('click', () => { $('#auth').hidden = true; });

    $('#login-form').addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const f = ev.target;
      formError(f, '');
      const r = await login(f.phone.value.trim(), f.password.value);
      if (!r.ok) return formError(f, errText(r));
      f.reset();
      toast(`Welcome back, ${state.me ? (state.me.nickname || state.me.phone) : ''}.`, 'ok');
    });

    $('#register-form').addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const f = ev.target;
      formError(f, '');
      const body = { phone: f.phone.value.trim(), password: f.password.value, nickname: f.nickname.value.trim() };
      const r = await api('POST', '/api/users', body);
      if (!r.ok) return formError(f, errText(r));
      const l = await login(body.phone, body.password);
      if (!l.ok) return formError(f, errText(l));
      f.reset();
      toast('Account created. You are logged in.', 'ok');
    });
  }

  // ---- sales -------------------------------------------------------------

  // effectiveStatus follows the server's status but moves it along with the
  // (server-corrected) clock between refreshes.
  function effectiveStatus(s, now) {
    const start = Date.parse(s.starts_at);
    const end = Date.parse(s.ends_at);
    if (s.status === 'ended' || now >= end) return 'ended';
    if (now < start) return 'upcoming';
    if (s.status === 'sold_out' || s.stock_left <= 0) return 'sold_out';
    return 'active';
  }

  const STATUS_TEXT = { upcoming: 'Upcoming', active: 'On sale', sold_out: 'Sold out', ended: 'Ended' };

  async function loadSales() {
    const r = await api('GET', '/api/sales');
    if (!r.ok) {
      if (!state.sales.length) $('#sales').replaceChildren(h('p', { className: 'error' }, errText(r)));
      return;
    }
    noteServerTime(r.data.server_time);
    state.sales = r.data.sales || [];
    state.salesLoaded = true;
    renderSales();
    renderStatsOptions();
  }

  function renderSales() {
    const box = $('#sales');
    if (!state.salesLoaded) return;
    if (!state.sales.length) {
      box.replaceChildren(h('p', { className: 'muted' }, 'No sales yet.'));
      state.cards.clear();
      return;
    }
    const now = serverNow();
    const next = new Map();
    const nodes = state.sales.map((s) => {
      const status = effectiveStatus(s, now);
      const sig = JSON.stringify([s, status, state.me && state.me.role]);
      const old = state.cards.get(s.id);
      const node = old && old.sig === sig ? old.node : saleCard(s, status);
      next.set(s.id, { sig, status, node });
      return node;
    });
    state.cards = next;
    box.replaceChildren(...nodes);
    tick();
  }

  function saleCard(s, status) {
    const img = safeURL(s.image_url);
    const left = Math.max(0, Number(s.stock_left) || 0);
    const pct = s.stock > 0 ? Math.round((100 * left) / s.stock) : 0;
    const admin = state.me && state.me.role === 'admin';
    return h('article', { className: `card ${status}`, 'data-sale': s.id },
      img ? h('img', { className: 'thumb', src: img, alt: '', loading: 'lazy', referrerPolicy: 'no-referrer' })
        : h('div', { className: 'thumb placeholder', 'aria-hidden': 'true' }, '⚡'),
      h('div', { className: 'card-body' },
        h('div', { className: 'card-top' },
          h('h3', {}, s.name),
          h('span', { className: `badge ${status}` }, STATUS_TEXT[status] || status)),
        s.description ? h('p', { className: 'desc' }, s.description) : null,
        h('p', { className: 'price' },
          h('strong', {}, money(s.price_cents)),
          s.original_price_cents > s.price_cents ? h('s', { className: 'muted' }, money(s.original_price_cents)) : null),
        h('div', { className: 'stock', title: 'Units left (may lag by a second)' },
          h('div', { className: 'bar' }, h('span', { style: { width: `${pct}%` } })),
          h('span', { className: 'muted' }, `${left} / ${s.stock} left`)),
        h('p', { className: 'countdown', 'data-countdown': s.id }),
        h('div', { className: 'row' },
          h('button', {
            type: 'button', className: 'primary', disabled: status !== 'active',
            onclick: () => openBuy(s),
          }, status === 'active' ? 'Buy now' : STATUS_TEXT[status]),
          s.require_captcha ? null : h('span', { className: 'muted small-text' }, 'no captcha'),
          admin ? h('button', { type: 'button', className: 'small', onclick: () => showStats(s.id) }, 'Stats') : null)));
  }

  // tick refreshes the clock and countdowns every second and re-renders the
  // cards whose status the clock has moved on.
  function tick() {
    const now = serverNow();
    $('#clock').textContent = `Server time ${new Date(now).toLocaleTimeString()}`;
    let moved = false;
    for (const s of state.sales) {
      const el = document.querySelector(`[data-countdown="${CSS.escape(String(s.id))}"]`);
      const status = effectiveStatus(s, now);
      const card = state.cards.get(s.id);
      if (card && card.status !== status) moved = true;
      if (!el) continue;
      if (status === 'upcoming') el.textContent = `Starts in ${duration(Date.parse(s.starts_at) - now)}`;
      else if (status === 'active' || status === 'sold_out') el.textContent = `Ends in ${duration(Date.parse(s.ends_at) - now)}`;
      else el.textContent = `Ended ${when(s.ends_at)}`;
    }
    if (moved) {
      renderSales();
      loadSales();
    }
  }

  // ---- buying ------------------------------------------------------------

  function setBuyStatus(text, kind = '') {
    const el = $('#buy-status');
    el.textContent = text;
    el.className = `status ${kind}`;
  }

  function openBuy(sale) {
    if (!state.me) {
      toast('Log in to buy.', 'warn');
      showAuth('login');
      return;
    }
    state.buy = { sale, run: {}, captchaId: '' };
    $('#buy-title').textContent = sale.name;
    $('#buy-price').textContent = `${money(sale.price_cents)} · one per person`;
    $('#buy-order').replaceChildren();
    $('#captcha-box').hidden = !sale.require_captcha;
    $('#captcha-answer').value = '';
    $('#buy-submit').disabled = false;
    $('#buy-submit').hidden = false;
    $('#buy-submit').textContent = sale.require_captcha ? 'Submit answer and buy' : 'Buy now';
    setBuyStatus('');
    const dlg = $('#buy-dialog');
    if (!dlg.open) dlg.showModal();
    if (sale.require_captcha) loadCaptcha();
    else $('#buy-submit').focus();
  }

  function closeBuy() {
    if (state.buy) state.buy.run.cancelled = true;
    state.buy = null;
    const dlg = $('#buy-dialog');
    if (dlg.open) dlg.close();
  }

  async function loadCaptcha() {
    const b = state.buy;
    if (!b) return;
    const img = $('#captcha-img');
    img.removeAttribute('src');
    const r = await api('GET', `/api/sales/${encodeURIComponent(b.sale.id)}/captcha`);
    if (state.buy !== b) return;
    if (!r.ok) {
      setBuyStatus(errText(r), 'bad');
      return;
    }
    const src = String(r.data.image || '');
    if (!src.startsWith('data:image/png;base64,')) {
      setBuyStatus('The server sent an unexpected captcha image.', 'bad');
      return;
    }
    b.captchaId = r.data.captcha_id;
    img.src = src;
    $('#captcha-answer').value = '';
    $('#captcha-answer').focus();
  }

  const OUTCOME = {
    202: 'ok', 409: 'warn', 410: 'bad', 429: 'warn', 503: 'warn',
  };

  async function buy() {
    const b = state.buy;
    if (!b) return;
    const id = encodeURIComponent(b.sale.id);
    const submit = $('#buy-submit');
    submit.disabled = true;
    try {
      // 1. The hidden purchase path, earned with the captcha answer.
      let body = {};
      if (b.sale.require_captcha) {
        const answer = $('#captcha-answer').value.trim();
        if (!answer) {
          setBuyStatus('Type the answer to the sum first.', 'warn');
          return;
        }
        body = { captcha_id: b.captchaId, answer };
      }
      setBuyStatus('Checking…');
      const p = await api('POST', `/api/sales/${id}/path`, body);
      if (state.buy !== b) return;
      if (!p.ok) {
        setBuyStatus(errText(p), p.status === 429 ? 'warn' : 'bad');
        // A captcha is single use: whatever went wrong, show a fresh one.
        if (b.sale.require_captcha) loadCaptcha();
        return;
      }

      // 2. The purchase itself.
      setBuyStatus('Placing your order…');
      const q = await api('POST', `/api/sales/${id}/purchase/${encodeURIComponent(p.data.path)}`);
      if (state.buy !== b) return;
      if (q.status !== 202) {
        let msg = errText(q);
        if (q.status === 503 && q.retryAfter) msg += ` Try again in ${q.retryAfter} s.`;
        setBuyStatus(msg, OUTCOME[q.status] || 'bad');
        if (q.status === 409 || q.status === 410) loadOrders();
        else if (b.sale.require_captcha) loadCaptcha();
        if (q.status === 410) loadSales();
        return;
      }
      setBuyStatus(`Queued — you are in line (ticket ${q.data.ticket || '–'}). Waiting for the result…`, 'ok');
      $('#captcha-box').hidden = true;
      submit.hidden = true;

      // 3. Wait for the result: pushed, or polled.
      await pollResult(b, id);
    } finally {
      if (state.buy === b) submit.disabled = false;
    }
  }

  // pollResult asks /result, then waits for the push; without one it asks
  // again, every 0.5 s without a socket and every 3 s with one.
  async function pollResult(b, id) {
    const deadline = Date.now() + 120000;
    while (!b.run.cancelled && Date.now() < deadline) {
      const r = await api('GET', `/api/sales/${id}/result`);
      if (b.run.cancelled || state.buy !== b) return;
      if (r.ok) {
        if (showResult(r.data)) return;
      } else if (r.status === 401) {
        setBuyStatus('Your session ended; log in again to see the result.', 'bad');
        return;
      }
      const m = await nextPush(b.sale.id, push.open ? 3000 : 500);
      if (b.run.cancelled || state.buy !== b) return;
      if (m && showResult(m)) return;
    }
    if (!b.run.cancelled) setBuyStatus('Still waiting. Check "My orders" in a moment.', 'warn');
  }

  // showResult shows a final result ({status, order_id, reason}, polled or
  // pushed) and reports whether it was final.
  function showResult(res) {
    if (res.status === 'success') {
      setBuyStatus('Success! Your order is placed — pay before the deadline.', 'ok');
      showOrder(res.order_id);
      loadOrders();
      loadSales();
      return true;
    }
    if (res.status === 'failed') {
      setBuyStatus(`Sorry, the purchase failed${res.reason ? `: ${res.reason}` : '.'}`, 'bad');
      loadSales();
      return true;
    }
    return false;
  }

  async function showOrder(orderId) {
    const box = $('#buy-order');
    if (orderId === undefined || orderId === null) return;
    const r = await api('GET', `/api/orders/${encodeURIComponent(orderId)}`);
    if (!r.ok) {
      box.replaceChildren(h('p', {}, `Order #${orderId}`));
      return;
    }
    const o = r.data.order;
    box.replaceChildren(h('dl', { className: 'stats' },
      h('dt', {}, 'Order'), h('dd', {}, o.order_no || `#${o.id}`),
      h('dt', {}, 'Price'), h('dd', {}, money(o.price_cents)),
      h('dt', {}, 'Status'), h('dd', {}, ORDER_TEXT[o.status] || o.status),
      h('dt', {}, 'Pay by'), h('dd', {}, when(o.pay_deadline))),
    o.status === 'pending_payment' ? h('button', { type: 'button', className: 'primary', onclick: () => pay(o.id) }, 'Pay now') : null);
  }

  function setupBuy() {
    $('#buy-form').addEventListener('submit', (ev) => { ev.preventDefault(); buy(); });
    $('#buy-close').addEventListener('click', closeBuy);
    $('#buy-dialog').addEventListener('close', () => { if (state.buy) closeBuy(); });
    $('#captcha-refresh').addEventListener('click', () => { setBuyStatus(''); loadCaptcha(); });
  }

  // ---- orders ------------------------------------------------------------

  const ORDER_TEXT = { pending_payment: 'Awaiting payment', paid: 'Paid', cancelled: 'Cancelled', refunded: 'Refunded' };

  async function loadOrders() {
    if (!state.me) return;
    const r = await api('GET', '/api/orders');
    const box = $('#orders');
    if (!r.ok) {
      box.replaceChildren(h('p', { className: 'error' }, errText(r)));
      return;
    }
    const orders = r.data.orders || [];
    if (!orders.length) {
      box.replaceChildren(h('p', { className: 'muted' }, 'No orders yet.'));
      return;
    }
    const names = new Map(state.sales.map((s) => [s.id, s.name]));
    box.replaceChildren(h('table', { className: 'orders' },
      h('thead', {}, h('tr', {}, ['Order', 'Sale', 'Price', 'Status', 'Created', 'Pay by / paid', ''].map((t) => h('th', {}, t)))),
      h('tbody', {}, orders.map((o) => h('tr', {},
        h('td', { 'data-label': 'Order' }, o.order_no || `#${o.id}`),
        h('td', { 'data-label': 'Sale' }, names.get(o.sale_id) || `#${o.sale_id}`),
        h('td', { 'data-label': 'Price' }, money(o.price_cents)),
        h('td', { 'data-label': 'Status' }, h('span', { className: `badge ${o.status}` }, ORDER_TEXT[o.status] || o.status)),
        h('td', { 'data-label': 'Created' }, when(o.created_at)),
        h('td', { 'data-label': 'Pay by / paid' }, o.paid_at ? when(o.paid_at) : o.status === 'pending_payment' ? when(o.pay_deadline) : '–'),
        h('td', { className: 'actions' }, o.status === 'pending_payment' ? [
          h('button', { type: 'button', className: 'small primary', onclick: () => pay(o.id) }, 'Pay'),
          h('button', { type: 'button', className: 'small', onclick: () => cancelOrder(o) }, 'Cancel'),
        ] : null))))));
  }

  async function pay(orderId) {
    const r = await api('POST', `/api/orders/${encodeURIComponent(orderId)}/pay`);
    if (!r.ok) return toast(errText(r), 'bad');
    const url = safeURL(r.data.pay_url);
    if (!url) return toast('The server sent an unexpected payment page address.', 'bad');
    window.open(url, '_blank', 'noopener');
    toast('Payment page opened. Refresh "My orders" when you have paid.');
  }

  async function cancelOrder(o) {
    if (!confirm(`Cancel order ${o.order_no || o.id}? You cannot buy in this sale again.`)) return;
    const r = await api('POST', `/api/orders/${encodeURIComponent(o.id)}/cancel`);
    if (!r.ok) return toast(errText(r), 'bad');
    toast('Order cancelled.');
    loadOrders();
    loadSales();
  }

  // ---- admin -------------------------------------------------------------

  function localInput(d) {
    const p = (n) => String(n).padStart(2, '0');
    return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
  }

  // rfc3339 turns a datetime-local value (local time) into RFC 3339 UTC.
  function rfc3339(v) {
    const t = new Date(v);
    return Number.isNaN(t.getTime()) ? null : t.toISOString().replace(/\.\d{3}Z$/, 'Z');
  }

  function setupAdmin() {
    const f = $('#sale-form');
    $('#quick-times').addEventListener('click', () => {
      // Server time, shown in local time: the form means what the server will.
      const start = new Date(Math.ceil((serverNow() + 60000) / 1000) * 1000);
      f.starts_at.value = localInput(start);
      f.ends_at.value = localInput(new Date(start.getTime() + 3600000));
    });
    f.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      formError(f, '');
      const price = parseCents(f.price.value);
      const orig = parseCents(f.original_price.value);
      const starts = rfc3339(f.starts_at.value);
      const ends = rfc3339(f.ends_at.value);
      if (price === null || orig === null) return formError(f, 'Prices look like 12 or 12.34.');
      if (!starts || !ends) return formError(f, 'Pick a start and an end time.');
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
      if (!r.ok) return formError(f, errText(r));
      toast(`Sale "${r.data.sale.name}" created.`, 'ok');
      f.reset();
      await loadSales();
      showStats(r.data.sale.id);
    });
    $('#stats-load').addEventListener('click', () => loadStats());
    $('#stats-auto').addEventListener('change', (ev) => setStatsAuto(ev.target.checked));
  }

  function renderStatsOptions() {
    const sel = $('#stats-sale');
    const cur = sel.value;
    sel.replaceChildren(...state.sales.map((s) => h('option', { value: String(s.id) }, `#${s.id} ${s.name}`)));
    if (cur) sel.value = cur;
  }

  function showStats(id) {
    $('#stats-sale').value = String(id);
    loadStats();
    $('#stats-panel').scrollIntoView({ behavior: 'smooth', block: 'nearest' });
  }

  const STATS = [
    ['stock', 'Stock'], ['gate_left', 'Left at the gate'], ['queued', 'Queued'], ['orders', 'Orders'],
    ['paid', 'Paid'], ['cancelled', 'Cancelled'], ['refunded', 'Refunded'], ['sql_stock_left', 'Left in SQL'],
  ];

  async function loadStats() {
    const id = $('#stats-sale').value;
    if (!id) return;
    const r = await api('GET', `/api/admin/sales/${encodeURIComponent(id)}/stats`);
    $('#stats-error').textContent = r.ok ? '' : errText(r);
    if (!r.ok) return;
    $('#stats').replaceChildren(...STATS.flatMap(([k, label]) => [
      h('dt', {}, label), h('dd', {}, r.data[k] === undefined ? '–' : String(r.data[k]))]));
  }

  function setStatsAuto(on) {
    clearInterval(state.statsTimer);
    state.statsTimer = on ? setInterval(loadStats, 2000) : 0;
    $('#stats-auto').checked = on;
  }

  // ---- start -------------------------------------------------------------

  function start() {
    setupAuth();
    setupBuy();
    setupAdmin();
    $('#orders-refresh').addEventListener('click', loadOrders);
    renderAccount();
    loadMe();
    loadSales();
    setInterval(tick, 1000);
    // Stock counts move during a sale; refresh them while the page is visible.
    setInterval(() => { if (!document.hidden) loadSales(); }, 5000);
  }

  start();
})();
