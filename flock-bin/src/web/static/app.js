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

    failures: 0,

    connect() {
      // The session's CSRF token, written into the page; the cookie goes along by itself.
      const meta = document.querySelector('meta[name="flock-csrf"]');
      const token = meta ? meta.content : '';
      const ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host +
        '/ws?csrf=' + encodeURIComponent(token));
      this.ws = ws;
      ws.onopen = () => {
        this.isOpen = true;
        this.failures = 0;
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
        // Refused twice in a row: the session is gone (log-out elsewhere, restart); a
        // reload gets a new one.
        if (!wasOpen && ++this.failures >= 2) {
          setTimeout(() => location.reload(), 1500);
          return;
        }
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
    show($('logout-wrap'), !!state.user);
    show($('nav-chats'), !!state.user);
    show($('nav-ring'), !!state.user);
    show($('prefs'), !!state.user);
    setConn(state.user ? state.connection : 'offline', state.server);
    const cur = $('current-servers');
    if (cur) cur.textContent = state.servers.length ? state.servers.join(', ') : 'none yet';
    if (pages.servers && document.body.dataset.page === 'servers') pages.servers.renderInUse();
  }

  // --- Unread count in the title, notifications, sound. ---
  const baseTitle = document.title;
  const Alerts = {
    unread: 0,
    timer: null,
    notified: 0,
    audio: null,
    sound: localStorage.getItem('flock-sound') === 'on',
    notify: localStorage.getItem('flock-notify') === 'on',

    setTitle() {
      const base = document.body.dataset.page === 'chat' ? pages.chat.peer + ' · Flock' : baseTitle;
      document.title = this.unread > 0 ? '(' + this.unread + ') ' + base : base;
      document.body.dataset.unreadTotal = String(this.unread);
    },
    refresh() {
      clearTimeout(this.timer);
      this.timer = setTimeout(async () => {
        if (!state.user) return;
        try {
          const chats = await Flock.call('load_chats');
          this.unread = chats.reduce((n, c) => n + (c.unread || 0), 0);
          this.setTitle();
        } catch (_) { /* not logged in any more */ }
      }, 150);
    },
    renderPrefs() {
      const n = $('notify');
      const granted = 'Notification' in window && Notification.permission === 'granted';
      const on = granted && this.notify;
      n.textContent = on ? 'Notify on' : 'Notify off';
      n.setAttribute('aria-pressed', on ? 'true' : 'false');
      n.title = !('Notification' in window) ? 'This browser has no notifications'
        : Notification.permission === 'denied' ? 'Notifications are blocked for this site in the browser settings'
        : 'Browser notifications for new messages while this tab is in the background';
      $('sound').textContent = this.sound ? 'Sound on' : 'Sound off';
      $('sound').setAttribute('aria-pressed', this.sound ? 'true' : 'false');
    },
    async toggleNotify() {
      if (!('Notification' in window)) return;
      if (Notification.permission === 'granted') {
        this.notify = !this.notify;
      } else {
        this.notify = (await Notification.requestPermission()) === 'granted';
      }
      localStorage.setItem('flock-notify', this.notify ? 'on' : 'off');
      this.renderPrefs();
    },
    toggleSound() {
      this.sound = !this.sound;
      localStorage.setItem('flock-sound', this.sound ? 'on' : 'off');
      if (this.sound) this.beep();
      this.renderPrefs();
    },
    // A short two-tone chime made here (WebAudio): no sound file, nothing from elsewhere.
    beep() {
      try {
        const AC = window.AudioContext || window.webkitAudioContext;
        if (!AC) return;
        this.audio = this.audio || new AC();
        const ctx = this.audio;
        const t = ctx.currentTime;
        for (const [i, f] of [[0, 880], [1, 1320]]) {
          const o = ctx.createOscillator();
          const g = ctx.createGain();
          o.frequency.value = f;
          g.gain.setValueAtTime(0.0001, t + i * 0.12);
          g.gain.exponentialRampToValueAtTime(0.2, t + i * 0.12 + 0.02);
          g.gain.exponentialRampToValueAtTime(0.0001, t + i * 0.12 + 0.2);
          o.connect(g).connect(ctx.destination);
          o.start(t + i * 0.12);
          o.stop(t + i * 0.12 + 0.22);
        }
        document.body.dataset.beeps = String(Number(document.body.dataset.beeps || 0) + 1);
      } catch (_) { /* no audio */ }
    },
    message(m) {
      this.refresh();
      const seenHere = document.visibilityState === 'visible' &&
        document.body.dataset.page === 'chat' && pages.chat.peer === m.from;
      if (seenHere) return;
      if (this.sound) this.beep();
      if (document.visibilityState !== 'visible' && this.notify &&
          'Notification' in window && Notification.permission === 'granted') {
        try {
          const n = new Notification('Flock: ' + m.from, {
            body: String(m.text).slice(0, 140),
            tag: 'flock-' + m.from,
          });
          n.onclick = () => {
            window.focus();
            location.assign('/chat/' + encodeURIComponent(m.from));
          };
          this.notified += 1;
          document.body.dataset.notified = String(this.notified);
        } catch (_) { /* not allowed here */ }
      }
    },
  };

  Flock.on('connection', (d) => {
    state.connection = d.state;
    state.server = d.server;
    if (state.user) setConn(d.state, d.server);
  });
  Flock.on('registration_refused', (d) => toast('Registration refused: ' + d.reason));
  Flock.on('warning', (d) => {
    // About the open chat's contact: said there, in place, until dismissed.
    if (document.body.dataset.page === 'chat' && d.user === pages.chat.peer) {
      $('peer-warning-text').textContent = d.text;
      show($('peer-warning'), true);
    } else {
      toast(d.text);
    }
  });
  Flock.on('new_message', (m) => {
    Alerts.message(m);
    // The chats page and the open chat show it already.
    const p = document.body.dataset.page;
    if (p === 'chats' || (p === 'chat' && pages.chat.peer === m.from)) return;
    toast('New message from ' + m.from);
  });
  for (const ev of ['unread_changed', 'resync']) Flock.on(ev, () => Alerts.refresh());
  Flock.on('logged_out', () => {
    state.user = null;
    renderHeader();
    const p = document.body.dataset.page;
    if (p === 'chats' || p === 'chat' || p === 'ring') location.assign('/register');
  });
  // Logged out in another tab (or the client was taken over): this page is done.
  Flock.on('session_ended', () => location.assign('/register'));

  // Every (re)connection: fetch the state, then let the page load its data.
  async function start(page) {
    try {
      state = await Flock.call('state');
      // A new session (after logging out) starts with the servers this browser used.
      if (!state.user) {
        let saved = [];
        try { saved = JSON.parse(localStorage.getItem('flock-servers') || '[]'); } catch (_) { /* none */ }
        saved = saved.slice(0, 8);
        if (saved.length && saved.join() !== state.servers.slice(0, saved.length).join()) {
          for (const server of saved.reverse()) {
            try { await Flock.call('connect_server', { server }); } catch (_) { /* gone */ }
          }
          state = await Flock.call('state');
        }
      }
      if (state.user && state.servers.length) localStorage.setItem('flock-servers', JSON.stringify(state.servers));
    } catch (err) {
      setError(err.message);
      return;
    }
    renderHeader();
    if ((page.needsUser && !state.user)) {
      location.assign('/register');
      return;
    }
    if (state.user) {
      Alerts.renderPrefs();
      Alerts.refresh();
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
      $('server-connect').disabled = true;
      try {
        await Flock.call('connect_server', { server });
        location.assign(state.user ? '/chats' : '/register');
      } catch (err) {
        setError(err.message);
      } finally {
        $('server-connect').disabled = false;
      }
    },
    renderInUse() {
      const list = $('in-use');
      list.replaceChildren();
      show($('no-servers'), state.servers.length === 0);
      state.servers.forEach((s, i) => {
        const li = el('li', 'in-use-item');
        li.dataset.server = s;
        li.append(el('span', 'mono grow', s));
        if (state.server === s && state.connection === 'registered') li.append(el('span', 'badge ok', 'connected'));
        else if (i === 0) li.append(el('span', 'hint', 'first choice'));
        const rm = el('button', 'remove', 'Remove');
        rm.type = 'button';
        rm.setAttribute('aria-label', 'Remove ' + s);
        rm.addEventListener('click', async () => {
          try {
            const r = await Flock.call('remove_server', { server: s });
            state.servers = r.servers;
            this.renderInUse();
            setError('');
          } catch (err) {
            setError(err.message);
          }
        });
        li.append(rm);
        list.append(li);
      });
    },
    async load() {
      show($('discover'), state.discovery !== false);
      this.renderInUse();
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
        $('tab-login').setAttribute('aria-selected', create ? 'false' : 'true');
        $('tab-create').setAttribute('aria-selected', create ? 'true' : 'false');
        $('register-submit').textContent = create ? 'Create account' : 'Log in';
        $('password').autocomplete = create ? 'new-password' : 'current-password';
        show($('pw-rule'), create);
        show($('name-rule'), create);
        setError('');
      };
      Flock.on('server_unreachable', (d) => this.offer(d));
      $('other-manual').addEventListener('submit', (e) => {
        e.preventDefault();
        this.useOther($('other-addr').value.trim());
      });
      $('other-discover').addEventListener('click', async () => {
        $('other-discover').disabled = true;
        try {
          const found = await Flock.call('discover_servers');
          this.offer({ alternatives: found, searched: true });
        } catch (err) {
          setError(err.message);
        } finally {
          $('other-discover').disabled = false;
        }
      });
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
        show($('other-servers'), false);
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
    // The servers to try instead of one that did not answer.
    offer(d) {
      const list = $('alternatives');
      list.replaceChildren();
      const alts = d.alternatives || [];
      for (const s of alts) {
        const li = el('li');
        const b = el('button', 'server', 'Use ' + s);
        b.type = 'button';
        b.dataset.server = s;
        b.addEventListener('click', () => this.useOther(s));
        li.append(b);
        list.append(li);
      }
      $('no-alternatives').textContent = d.searched ? 'No server answered the search.'
        : state.discovery !== false ? 'No other server is known yet: type one, or search the network.'
        : 'No other server is known yet: type one.';
      show($('no-alternatives'), alts.length === 0);
      show($('other-discover'), state.discovery !== false);
      show($('other-servers'), true);
    },
    async useOther(server) {
      try {
        const r = await Flock.call('connect_server', { server });
        state.servers = r.servers;
        renderHeader();
        show($('other-servers'), false);
        setError('');
        $('reg-status').textContent = 'Now using ' + r.server + '. Press ' +
          $('register-submit').textContent + ' again.';
      } catch (err) {
        setError(err.message);
      }
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
        const rm = el('button', 'remove small', '\u00d7');
        rm.type = 'button';
        rm.title = 'Remove this chat from the list';
        rm.setAttribute('aria-label', 'Remove the chat with ' + c.peer);
        rm.addEventListener('click', async () => {
          try {
            await Flock.call('hide_chat', { peer: c.peer });
            li.remove();
          } catch (err) {
            setError(err.message);
          }
        });
        if (c.last.outgoing && c.last.status === 'failed') top.append(el('span', 'badge bad', 'not delivered'));
        li.append(a, rm);
        list.append(li);
      }
    },
  };

  const STATUS_RANK = { queued: 0, sent: 1, failed: 2, delivered: 3, received: 3 };
  const STATUS_TEXT = {
    queued: 'queued',
    sent: 'sent',
    failed: 'not delivered',
    delivered: 'delivered',
  };

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
      $('missing-user').textContent = peer;
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
      Flock.on('user_not_found', (u) => {
        if (u.user !== this.peer) return;
        $('missing-user').textContent = this.peer;
        show($('peer-missing'), true);
      });
      $('peer-warning-dismiss').addEventListener('click', () => show($('peer-warning'), false));
      $('peer-warning-retry').addEventListener('click', async () => {
        show($('peer-warning'), false);
        await this.load().catch((err) => setError(err.message));
      });
      $('missing-retry').addEventListener('click', async () => {
        show($('peer-missing'), false);
        await this.load().catch((err) => setError(err.message));
      });
      $('missing-remove').addEventListener('click', async () => {
        try {
          await Flock.call('hide_chat', { peer: this.peer });
          location.assign('/chats');
        } catch (err) {
          setError(err.message);
        }
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
      if (m.outgoing) {
        meta.append(el('span', 'status'));
        const retry = el('button', 'retry linkish', 'Retry');
        retry.type = 'button';
        retry.title = 'Send this message again';
        retry.addEventListener('click', () => this.retry(m.text, retry));
        meta.append(retry);
      }
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
    async retry(text, btn) {
      btn.disabled = true;
      try {
        await Flock.call('send_message', { to: this.peer, text });
        setError('');
      } catch (err) {
        setError('Not sent: ' + err.message);
      } finally {
        btn.disabled = false;
      }
    },
    paint(li, id, status) {
      const known = this.statuses.get(id);
      if (known && (STATUS_RANK[known] || 0) > (STATUS_RANK[status] || 0)) status = known;
      li.dataset.status = status;
      li.querySelector('.status').textContent = STATUS_TEXT[status] || status;
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

  const SVG = 'http://www.w3.org/2000/svg';
  function svg(tag, attrs, text) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = String(text);
    return e;
  }

  pages.ring = {
    needsUser: true,
    timer: null,
    user: '',
    seenAt: new Map(), // node -> position last reported
    init() {
      $('ring-find').addEventListener('submit', (e) => {
        e.preventDefault();
        const u = $('ring-user').value.trim();
        if (u && !USERNAME.test(u)) {
          setError('Usernames are 3 to 20 letters, digits or _.');
          return;
        }
        this.user = u;
        this.poll();
      });
    },
    async load() {
      this.poll();
    },
    async poll() {
      clearTimeout(this.timer);
      try {
        const view = await Flock.call('ring', this.user ? { user: this.user } : {});
        this.render(view);
        setError(view.error || '');
      } catch (err) {
        setError(err.message);
      }
      this.timer = setTimeout(() => this.poll(), 1000);
    },
    render(v) {
      $('ring-server').textContent = v.server;
      $('ring-note').textContent = v.note || '';
      const nodes = v.nodes || [];
      const alive = nodes.filter((n) => n.alive);
      const dead = nodes.filter((n) => !n.alive);
      $('ring-summary').textContent = alive.length + (alive.length === 1 ? ' node' : ' nodes') +
        (dead.length ? ', ' + dead.length + ' not answering' : '');
      document.body.dataset.ringAlive = String(alive.length);
      document.body.dataset.ringDead = String(dead.length);
      const place = v.user;
      const holders = new Map((place && place.holders || []).map((h) => [h.node, h.owned]));
      // The circle: each node at its id, the arc it owns drawn up to it.
      const g = $('ring-svg');
      g.replaceChildren(svg('title', { id: 'ring-title' }, 'Ring of ' + alive.length + ' nodes'));
      g.append(svg('circle', { cx: 0, cy: 0, r: 100, class: 'ring-circle' }));
      const pos = (f, r) => {
        const a = 2 * Math.PI * f - Math.PI / 2;
        return [r * Math.cos(a), r * Math.sin(a)];
      };
      // Each node's range [lo, hi], as it reports it, drawn clockwise in its colour.
      nodes.forEach((n, i) => {
        if (!n.alive || !n.arc) return;
        let [f0, f1] = n.arc;
        let span = f1 - f0;
        if (span < 0) span += 1;
        if (span > 0.999) f1 = f0 + 0.999; // alone: the whole ring
        const [x0, y0] = pos(f0, 100);
        const [x1, y1] = pos(f1, 100);
        g.append(svg('path', {
          d: `M ${x0} ${y0} A 100 100 0 ${span > 0.5 ? 1 : 0} 1 ${x1} ${y1}`,
          class: 'ring-arc arc-' + (i % 6),
        }));
      });
      // A node that stopped answering stays where it was last seen.
      for (const n of nodes) {
        if (typeof n.frac === 'number') this.seenAt.set(n.node, n.frac);
        else if (this.seenAt.has(n.node)) n.frac = this.seenAt.get(n.node);
      }
      const unplaced = nodes.filter((n) => typeof n.frac !== 'number');
      unplaced.forEach((n, i) => { n.frac = (i + 0.5) / Math.max(unplaced.length, 1); });
      for (const n of nodes) {
        const [x, y] = pos(n.frac, 100);
        const cls = 'ring-node' + (n.alive ? '' : ' dead') + (holders.has(n.node) ? ' holder' : '') +
          (place && place.owner === n.node ? ' owner' : '');
        const dot = svg('circle', { cx: x, cy: y, r: holders.has(n.node) ? 8 : 6, class: cls });
        dot.append(svg('title', {}, n.node + (n.alive ? '' : ' (not answering)')));
        g.append(dot);
        const [lx, ly] = pos(n.frac, 118);
        g.append(svg('text', {
          x: lx, y: ly, class: 'ring-label' + (n.alive ? '' : ' dead'),
          'text-anchor': lx > 5 ? 'start' : lx < -5 ? 'end' : 'middle', 'dominant-baseline': 'middle',
        }, n.name || n.node.replace(/^127\.0\.0\.1:/, ':')));
      }
      if (place) {
        const [x, y] = pos(place.frac, 82);
        g.append(svg('circle', { cx: x, cy: y, r: 4, class: 'ring-user' }));
        g.append(svg('text', { x: x * 0.78, y: y * 0.78, class: 'ring-user-label', 'text-anchor': 'middle' }, place.name));
        const owner = place.owner || 'no node (ranges not known)';
        const reps = [...holders.entries()].filter(([, owned]) => !owned).map(([n]) => n);
        $('ring-user-place').textContent = place.name + ' hashes to ' + place.hash + '; its range is owned by ' +
          owner + '. ' + (holders.size
            ? 'The record is held by ' + [...holders.keys()].join(', ') + (reps.length ? ' (replicas: ' + reps.join(', ') + ')' : '') + '.'
            : 'No node holds a record of ' + place.name + ' (not registered).');
        show($('ring-user-place'), true);
      } else {
        show($('ring-user-place'), false);
      }
      // The table.
      const body = $('ring-nodes');
      body.replaceChildren();
      for (const n of nodes) {
        const tr = el('tr', n.alive ? '' : 'dead');
        tr.dataset.node = n.node;
        tr.dataset.alive = n.alive ? '1' : '0';
        tr.append(el('td', 'mono', n.node));
        tr.append(el('td', null, n.alive ? (n.name || '') : 'not answering'));
        tr.append(el('td', 'mono small-text', n.lo !== undefined ? '[' + n.lo + ' … ' + n.hi + ']' : '—'));
        tr.append(el('td', null, n.records !== undefined ? n.records + ' (' + n.owned + ' owned)' : '—'));
        tr.append(el('td', 'mono small-text', (n.succs || []).join(' ')));
        body.append(tr);
      }
      document.body.dataset.ringReady = '1';
    },
  };

  document.addEventListener('DOMContentLoaded', () => {
    const page = pages[document.body.dataset.page];
    if (!page) return;
    page.init();
    const menu = $('logout-menu');
    const closeMenu = () => {
      show(menu, false);
      $('logout').setAttribute('aria-expanded', 'false');
    };
    $('logout').addEventListener('click', () => {
      const open = menu.hidden;
      show(menu, open);
      $('logout').setAttribute('aria-expanded', open ? 'true' : 'false');
      if (open) $('logout-stop').focus();
    });
    menu.addEventListener('keydown', (e) => {
      if (e.key === 'Escape') {
        closeMenu();
        $('logout').focus();
      }
    });
    const logout = async (keep) => {
      closeMenu();
      try {
        await Flock.call('logout', { keep });
      } catch (_) { /* the session ends anyway */ }
      location.assign('/register');
    };
    $('logout-stop').addEventListener('click', () => logout(false));
    $('logout-keep').addEventListener('click', () => logout(true));
    $('notify').addEventListener('click', () => Alerts.toggleNotify());
    $('sound').addEventListener('click', () => Alerts.toggleSound());
    Flock.on('open', () => start(page));
    Flock.connect();
  });
})();
