// Flock web UI. Plain JavaScript, no dependencies.
//
// Every piece of user-controlled text (messages, usernames, server names, errors) goes
// into the page through textContent, never innerHTML.
'use strict';

(function () {
  // Most UTF-8 bytes per message (64 KiB; longer text is split into parts by the
  // client, so nothing is cut). Counted in bytes, as the client counts.
  const MAX_TEXT = 65536;
  const utf8Bytes = (s) => new TextEncoder().encode(s).length;
  const USERNAME = /^[\p{L}\p{N}_]{3,20}$/u;

  const $ = (id) => document.getElementById(id);

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function show(node, visible) {
    if (node) node.hidden = !visible;
  }

  function setError(text) {
    const e = $('error');
    if (e) e.textContent = text || '';
  }

  let toastTimer = null;
  function toast(text) {
    const t = $('toast');
    if (!t) return;
    t.textContent = text;
    t.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { t.hidden = true; }, 6000);
  }

  function clock(ms) {
    const d = new Date(ms);
    const now = new Date();
    const time = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    if (d.toDateString() === now.toDateString()) return time;
    return d.toLocaleDateString([], { month: 'short', day: 'numeric' }) + ' ' + time;
  }

  function shortFp(fp) {
    return fp ? String(fp).slice(0, 16).replace(/(.{4})(?=.)/g, '$1 ') : '';
  }

  // --- The WebSocket: requests with replies, pushed events, reconnection. ---
  const Flock = {
    ws: null,
    isOpen: false,
    nextRef: 1,
    pending: new Map(),
    queue: [],
    handlers: {},

    connect() {
      const ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws');
      this.ws = ws;
      ws.onopen = () => {
        this.isOpen = true;
        for (const m of this.queue) ws.send(m);
        this.queue = [];
        this.fire('open', {});
      };
      ws.onmessage = (e) => {
        let m;
        try { m = JSON.parse(e.data); } catch (_) { return; }
        if (m.type === 'reply') {
          const p = this.pending.get(m.ref);
          if (!p) return;
          this.pending.delete(m.ref);
          if (m.ok) p.resolve(m.data); else p.reject(new Error(m.error || 'failed'));
        } else if (m.type === 'event') {
          this.fire(m.event, m.data || {});
        }
      };
      ws.onclose = () => {
        const wasOpen = this.isOpen;
        this.isOpen = false;
        for (const p of this.pending.values()) p.reject(new Error('lost the connection to flock web'));
        this.pending.clear();
        if (wasOpen) setConn('offline', null, 'flock web is not answering');
        setTimeout(() => this.connect(), 1000);
      };
    },

    call(event, data) {
      return new Promise((resolve, reject) => {
        const ref = this.nextRef++;
        this.pending.set(ref, { resolve, reject });
        const msg = JSON.stringify({ ref, event, data: data || {} });
        if (this.isOpen) this.ws.send(msg); else this.queue.push(msg);
      });
    },

    on(event, fn) {
      (this.handlers[event] = this.handlers[event] || []).push(fn);
    },

    fire(event, data) {
      for (const fn of this.handlers[event] || []) {
        try { fn(data); } catch (err) { console.error(err); }
      }
    },
  };

  // --- The header, on every page. ---
  let state = { user: null, servers: [], connection: 'offline', server: null };

  function setConn(conn, server, title) {
    const c = $('conn');
    if (!c) return;
    c.dataset.state = conn;
    c.textContent = conn === 'registered' ? 'online' : conn;
    c.title = title || (server ? conn + ' via ' + server : 'connection to the ring');
  }

  function renderHeader() {
    $('who').textContent = state.user ? state.user : '';
    show($('logout'), !!state.user);
    show($('nav-chats'), !!state.user);
    setConn(state.user ? state.connection : 'offline', state.server);
    const cur = $('current-servers');
    if (cur) cur.textContent = state.servers.length ? state.servers.join(', ') : 'none yet';
  }

  Flock.on('connection', (d) => {
    state.connection = d.state;
    state.server = d.server;
    setConn(d.state, d.server);
  });
  Flock.on('registration_refused', (d) => toast('Registration refused: ' + d.reason));
  Flock.on('warning', (d) => toast(d.text));
  Flock.on('new_message', (m) => {
    // The chats page and the open chat show it already.
    const p = document.body.dataset.page;
    if (p === 'chats' || (p === 'chat' && pages.chat.peer === m.from)) return;
    toast('New message from ' + m.from);
  });
  Flock.on('logged_out', () => {
    state.user = null;
    renderHeader();
    const p = document.body.dataset.page;
    if (p === 'chats' || p === 'chat') location.assign('/register');
  });

  // Every (re)connection: fetch the state, then let the page load its data.
  async function start(page) {
    try {
      state = await Flock.call('state');
    } catch (err) {
      setError(err.message);
      return;
    }
    renderHeader();
    if ((page.needsUser && !state.user)) {
      location.assign('/register');
      return;
    }
    try {
      await page.load();
      setError('');
    } catch (err) {
      setError(err.message);
    }
    document.body.dataset.ready = '1';
  }

  // --- Pages. ---
  const pages = {};

  pages.servers = {
    needsUser: false,
    init() {
      $('discover').addEventListener('click', async () => {
        const btn = $('discover');
        btn.disabled = true;
        setError('');
        $('discover-status').textContent = 'Searching…';
        const list = $('found');
        list.replaceChildren();
        try {
          const found = await Flock.call('discover_servers');
          $('discover-status').textContent = found.length
            ? found.length + (found.length === 1 ? ' server answered:' : ' servers answered:')
            : 'No server answered. Type an address below.';
          for (const s of found) {
            const li = el('li');
            const b = el('button', 'server', s);
            b.type = 'button';
            b.addEventListener('click', () => this.use(s));
            li.append(b);
            list.append(li);
          }
        } catch (err) {
          $('discover-status').textContent = '';
          setError(err.message);
        } finally {
          btn.disabled = false;
        }
      });
      $('manual').addEventListener('submit', (e) => {
        e.preventDefault();
        this.use($('server-addr').value.trim());
      });
    },
    async use(server) {
      setError('');
      try {
        await Flock.call('connect_server', { server });
        location.assign(state.user ? '/chats' : '/register');
      } catch (err) {
        setError(err.message);
      }
    },
    async load() {
      show($('discover'), state.discovery !== false);
    },
  };

  pages.register = {
    needsUser: false,
    mode: 'login',
    init() {
      const setMode = (mode) => {
        this.mode = mode;
        const create = mode === 'create';
        $('tab-login').classList.toggle('active', !create);
        $('tab-create').classList.toggle('active', create);
        $('register-submit').textContent = create ? 'Create account' : 'Log in';
        $('password').autocomplete = create ? 'new-password' : 'current-password';
        show($('pw-rule'), create);
        show($('name-rule'), create);
        setError('');
      };
      $('tab-login').addEventListener('click', () => setMode('login'));
      $('tab-create').addEventListener('click', () => setMode('create'));
      $('register').addEventListener('submit', async (e) => {
        e.preventDefault();
        const username = $('username').value.trim();
        const password = $('password').value;
        const create = this.mode === 'create';
        if (!USERNAME.test(username)) {
          setError('Usernames are 3 to 20 letters, digits or _.');
          return;
        }
        if (create && !(password.length >= 8 && /\p{Lu}/u.test(password) &&
            /\p{Ll}/u.test(password) && /[0-9]/.test(password))) {
          setError('The password needs at least 8 characters, with upper case, lower case and a digit.');
          return;
        }
        setError('');
        const btn = $('register-submit');
        btn.disabled = true;
        $('reg-status').textContent = create ? 'Creating your key and registering…' : 'Unlocking your key and registering…';
        try {
          await Flock.call('register', { username, password, mode: this.mode });
          location.assign('/chats');
        } catch (err) {
          $('reg-status').textContent = '';
          setError(err.message);
        } finally {
          btn.disabled = false;
        }
      });
    },
    async load() {
      if (state.user) location.assign('/chats');
    },
  };

  pages.chats = {
    needsUser: true,
    timer: null,
    init() {
      $('open-chat').addEventListener('submit', (e) => {
        e.preventDefault();
        const peer = $('peer').value.trim();
        if (!USERNAME.test(peer)) {
          setError('Usernames are 3 to 20 letters, digits or _.');
          return;
        }
        if (peer === state.user) {
          setError('That is you.');
          return;
        }
        location.assign('/chat/' + encodeURIComponent(peer));
      });
      const later = () => {
        clearTimeout(this.timer);
        this.timer = setTimeout(() => this.load().catch((err) => setError(err.message)), 100);
      };
      for (const ev of ['new_message', 'message_sent', 'status_changed', 'unread_changed', 'resync']) {
        Flock.on(ev, later);
      }
    },
    async load() {
      const chats = await Flock.call('load_chats');
      const list = $('chats');
      list.replaceChildren();
      show($('no-chats'), chats.length === 0);
      for (const c of chats) {
        const li = el('li', 'chat');
        li.dataset.peer = c.peer;
        li.dataset.unread = String(c.unread);
        const a = el('a');
        a.href = '/chat/' + encodeURIComponent(c.peer);
        const avatar = el('span', 'avatar', [...c.peer][0].toUpperCase());
        const body = el('span', 'chat-body');
        const top = el('span', 'chat-top');
        top.append(el('span', 'peer', c.peer));
        if (c.lookalike) {
          const mark = el('span', 'badge lookalike', '\u26a0 ' + c.lookalike);
          mark.title = 'Check who this is: the name ' + c.lookalike;
          top.append(mark);
        }
        top.append(el('time', 'when', clock(c.last.at_ms)));
        const bottom = el('span', 'chat-bottom');
        const last = el('span', 'last');
        if (c.last.outgoing) last.append(el('span', 'you', 'You: '));
        last.append(document.createTextNode(c.last.text));
        bottom.append(last);
        if (c.unread > 0) bottom.append(el('span', 'badge unread', c.unread));
        body.append(top, bottom);
        a.append(avatar, body);
        li.append(a);
        list.append(li);
      }
    },
  };

  const STATUS_RANK = { queued: 0, sent: 1, failed: 2, delivered: 3, received: 3 };

  pages.chat = {
    needsUser: true,
    peer: '',
    byId: new Map(), // msg_id -> list item of our messages
    statuses: new Map(), // msg_id -> last status seen
    init() {
      let peer = '';
      try {
        peer = decodeURIComponent(location.pathname.slice('/chat/'.length));
      } catch (_) { /* invalid escape */ }
      this.peer = peer;
      $('peer-name').textContent = peer;
      document.title = peer + ' · Flock';
      const text = $('text');
      const count = () => {
        const n = utf8Bytes(text.value);
        $('count').textContent = n + ' / ' + MAX_TEXT + ' bytes';
        $('count').classList.toggle('over', n > MAX_TEXT);
      };
      text.addEventListener('input', count);
      text.addEventListener('keydown', (e) => {
        if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
          e.preventDefault();
          $('composer').requestSubmit();
        }
      });
      $('composer').addEventListener('submit', async (e) => {
        e.preventDefault();
        const value = text.value;
        if (!value.trim()) return;
        const bytes = utf8Bytes(value);
        if (bytes > MAX_TEXT) {
          setError('Message too long: ' + bytes + ' bytes (UTF-8), at most ' + MAX_TEXT + '. Nothing was sent.');
          return;
        }
        setError('');
        $('send').disabled = true;
        try {
          await Flock.call('send_message', { to: this.peer, text: value });
          text.value = '';
          count();
        } catch (err) {
          setError('Not sent: ' + err.message);
        } finally {
          $('send').disabled = false;
          text.focus();
        }
      });
      $('verify').addEventListener('click', () => this.verify());
      Flock.on('verified_changed', (v) => {
        if (v.user === this.peer) this.showVerified(v.verified);
      });
      $('key-accept').addEventListener('click', () => this.decide('accept_key'));
      $('key-reject').addEventListener('click', () => this.decide('reject_key'));

      Flock.on('new_message', (m) => {
        if (m.from !== this.peer) return;
        this.append({ outgoing: false, text: m.text, at_ms: m.at_ms, status: 'received', authenticated: m.authenticated });
        if (document.visibilityState === 'visible') this.markSeen();
      });
      Flock.on('message_sent', (m) => {
        if (m.to !== this.peer || this.byId.has(m.msg_id)) return;
        this.append({ outgoing: true, text: m.text, at_ms: m.at_ms, status: m.status, msg_id: m.msg_id });
      });
      Flock.on('status_changed', (s) => {
        if (s.to === this.peer) this.setStatus(s.msg_id, s.status);
      });
      Flock.on('key_changed', (k) => {
        if (k.user === this.peer) this.banner(k.pinned, k.new, k.verified);
      });
      const clear = (k) => {
        if (k.user === this.peer) show($('key-banner'), false);
      };
      Flock.on('key_accepted', (k) => {
        clear(k);
        if (k.user === this.peer) this.load().catch((err) => setError(err.message));
      });
      Flock.on('key_rejected', clear);
      Flock.on('key_pinned', (k) => {
        if (k.user !== this.peer) return;
        $('peer-key').textContent = 'key ' + shortFp(k.fingerprint);
        // The safety number exists from now on.
        this.load().catch((err) => setError(err.message));
      });
      Flock.on('resync', () => this.load().catch((err) => setError(err.message)));
      document.addEventListener('visibilitychange', () => {
        if (document.visibilityState === 'visible') this.markSeen();
      });
    },
    async load() {
      const h = await Flock.call('load_chat_history', { peer: this.peer });
      this.byId.clear();
      $('messages').replaceChildren();
      for (const m of h.messages) {
        this.append({
          outgoing: m.outgoing, text: m.text, at_ms: m.at_ms, status: m.status,
          msg_id: m.msg_id, authenticated: m.authenticated,
        }, false);
      }
      show($('no-messages'), h.messages.length === 0);
      $('peer-lookalike').textContent = h.lookalike ? '\u26a0 ' + h.lookalike : '';
      show($('peer-lookalike'), Boolean(h.lookalike));
      this.scroll();
      if (h.key) {
        $('peer-key').textContent = 'key ' + shortFp(h.key.fingerprint);
        if (h.key.pending) this.banner(h.key.fingerprint, h.key.pending, h.verified);
        else show($('key-banner'), false);
      }
      if (h.safety_number) {
        $('safety-peer').textContent = this.peer;
        $('safety-number').textContent = h.safety_number;
        this.showVerified(h.verified);
        show($('safety'), true);
      } else {
        show($('safety'), false);
      }
      await this.markSeen();
    },
    async markSeen() {
      try {
        await Flock.call('mark_seen', { peer: this.peer });
      } catch (_) { /* shown elsewhere */ }
    },
    showVerified(verified) {
      this.verified = verified;
      show($('safety-verified'), verified);
      $('verify').textContent = verified ? 'Mark as not verified' : 'Mark as verified';
      $('verify').setAttribute('aria-pressed', verified ? 'true' : 'false');
    },
    async verify() {
      try {
        await Flock.call('verify_contact', { user: this.peer, verified: !this.verified });
      } catch (err) {
        setError(err.message);
      }
    },
    banner(pinned, fresh, verified = false) {
      show($('key-was-verified'), verified === true);
      $('key-user').textContent = this.peer;
      $('key-pinned').textContent = shortFp(pinned);
      $('key-new').textContent = shortFp(fresh);
      show($('key-banner'), true);
    },
    async decide(what) {
      try {
        await Flock.call(what, { user: this.peer });
        show($('key-banner'), false);
      } catch (err) {
        setError(err.message);
      }
    },
    append(m, scroll = true) {
      show($('no-messages'), false);
      const li = el('li', 'msg ' + (m.outgoing ? 'out' : 'in'));
      const bubble = el('div', 'bubble');
      bubble.append(el('div', 'text', m.text));
      const meta = el('div', 'meta');
      meta.append(el('time', null, clock(m.at_ms)));
      if (!m.outgoing && m.authenticated === false) {
        meta.append(el('span', 'unverified', 'unverified sender'));
      }
      if (m.outgoing) meta.append(el('span', 'status'));
      bubble.append(meta);
      li.append(bubble);
      if (m.outgoing) {
        if (m.msg_id !== null && m.msg_id !== undefined) {
          this.byId.set(m.msg_id, li);
          li.dataset.msgId = String(m.msg_id);
        }
        this.paint(li, m.msg_id, m.status);
      }
      $('messages').append(li);
      if (scroll) this.scroll();
    },
    paint(li, id, status) {
      const known = this.statuses.get(id);
      if (known && (STATUS_RANK[known] || 0) > (STATUS_RANK[status] || 0)) status = known;
      li.dataset.status = status;
      li.querySelector('.status').textContent = status;
    },
    setStatus(id, status) {
      const known = this.statuses.get(id);
      if (!known || (STATUS_RANK[status] || 0) >= (STATUS_RANK[known] || 0)) this.statuses.set(id, status);
      const li = this.byId.get(id);
      if (li) this.paint(li, id, status);
    },
    scroll() {
      const list = $('messages');
      list.scrollTop = list.scrollHeight;
    },
  };

  document.addEventListener('DOMContentLoaded', () => {
    const page = pages[document.body.dataset.page];
    if (!page) return;
    page.init();
    $('logout').addEventListener('click', async () => {
      try {
        await Flock.call('logout');
      } catch (_) { /* ignore */ }
      location.assign('/register');
    });
    Flock.on('open', () => start(page));
    Flock.connect();
  });
})();
