<?php
declare(strict_types=1);

namespace EmbedChat;

use EmbedChat\Exception\EmbedChatException;
use EmbedChat\Exception\StoppedException;

/**
 * A chat engine: one started in this process (start()), or a daemon's reached through its
 * control socket (connect()).
 *
 * Event handlers run only inside run()/dispatch(), on the calling PHP thread: the engine queues
 * events on its own threads and PHP takes them from there. PHP must never be called from a
 * thread it does not own (the Zend engine is not thread-safe; doing so crashes the process),
 * which is why there is no "callback from the engine thread" mode here.
 */
final class Engine
{
    private ?\FFI\CData $handle;
    /** @var array<int, list<callable(Event): void>> */
    private array $handlers = [];
    /** @var list<callable(Event): void> */
    private array $any = [];
    private bool $callbackSet = false;
    private bool $keepRunning = false;
    private ?\Throwable $failure = null;
    /** @var resource|null */
    private $stream = null;

    private function __construct(private readonly \FFI $ffi, \FFI\CData $handle, private readonly bool $remote)
    {
        $this->handle = $handle;
    }

    /**
     * Starts an engine with a config array (docs/config.md lists the keys; [] = defaults) and
     * returns once it accepts connections.
     *
     * @throws Exception\ConfigException naming the key, Exception\BindException, Exception\LibraryException
     */
    public static function start(array $config = [], ?string $libraryPath = null): self
    {
        $ffi = Native::ffi($libraryPath);
        $json = json_encode($config === [] ? new \stdClass() : $config, JSON_THROW_ON_ERROR | JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE);
        $h = $ffi->chat_start($json);
        if ($h === null) {
            throw Native::lastError($ffi);
        }
        return new self($ffi, $h, false);
    }

    /**
     * Reaches an engine another process runs with `"control_socket"` in its config (the
     * daemon), e.g. from a PHP-FPM page. broadcast(), send(), kick(), stats(), presence() and
     * port() act on the daemon; events and moderation stay with it (UnsupportedException).
     *
     * The daemon must run as this process's user or root, or as $daemonUser (a user name or a
     * numeric uid) when given: anyone else answering on the path is refused, since another
     * user may have bound it while the daemon was down. An FPM pool whose user is not the
     * daemon's names the daemon's user here (and the daemon lists the pool's uid in
     * `control_socket_uids`).
     *
     * @throws Exception\ControlException when nothing answers at $socketPath, the daemon refuses
     *         this process, or a daemon of another user answers
     * @throws Exception\InvalidValueException when $daemonUser is no user
     */
    public static function connect(string $socketPath, ?string $libraryPath = null, ?string $daemonUser = null): self
    {
        $ffi = Native::ffi($libraryPath);
        $h = $daemonUser === null
            ? $ffi->chat_connect(Native::text($socketPath, 'socket path'))
            : $ffi->chat_connect_trusting(Native::text($socketPath, 'socket path'), Native::text($daemonUser, 'daemon user'));
        if ($h === null) {
            throw Native::lastError($ffi);
        }
        return new self($ffi, $h, true);
    }

    private function h(): \FFI\CData
    {
        if ($this->handle === null) {
            throw new StoppedException('the engine handle was freed', Native::RESULTS['CHAT_ERR_STOPPED']);
        }
        return $this->handle;
    }

    public function isRemote(): bool
    {
        return $this->remote;
    }

    public function port(): int
    {
        $p = (int) $this->ffi->chat_port($this->h());
        if ($p === 0) {
            throw Native::error(Native::RESULTS['CHAT_ERR_STOPPED'], (string) $this->ffi->chat_last_error());
        }
        return $p;
    }

    /**
     * A message from the host to $room (null: every room), shown as sent by $from (null: the
     * config's `host_name`). Returns how many connections got it.
     */
    public function broadcast(?string $room, string $text, ?string $from = null): int
    {
        return Native::check($this->ffi, $this->ffi->chat_broadcast_from(
            $this->h(),
            $room === null ? null : Native::text($room, 'room'),
            Native::text($text, 'text'),
            $from === null ? null : Native::text($from, 'from'),
        ));
    }

    /** A private message from the host to one connection. */
    public function send(int $connId, string $text): void
    {
        Native::check($this->ffi, $this->ffi->chat_send($this->h(), $connId, Native::text($text, 'text')));
    }

    /** Closes a connection with close code 4000 and $reason. */
    public function kick(int $connId, string $reason = ''): void
    {
        Native::check($this->ffi, $this->ffi->chat_kick($this->h(), $connId, Native::text($reason, 'reason')));
    }

    /**
     * Closes every connection (every tab) of a logged-in user, the login token's `sub`, with close
     * code 4000 and $reason; returns how many. A user with no open connection is an
     * InvalidValueException.
     */
    public function kickUser(string $user, string $reason = ''): int
    {
        return Native::check($this->ffi, $this->ffi->chat_kick_user(
            $this->h(),
            Native::text($user, 'user'),
            Native::text($reason, 'reason'),
        ));
    }

    /**
     * The rooms with someone in them, by name: `[['room' => , 'users' => , 'connections' => ,
     * 'last_id' => ], ...]` (`users` counts a user with several tabs once).
     *
     * @return list<array{room: string, users: int, connections: int, last_id: int}>
     */
    public function rooms(): array
    {
        return $this->json($this->ffi->chat_rooms_json($this->h()));
    }

    /**
     * The users in $room once each: `[['id' => , 'name' => , 'tabs' => , 'conns' => [...],
     * 'user' => ?], ...]` (`user`: the login token's `sub`). An empty list for an empty room.
     *
     * @return list<array<string, mixed>>
     */
    public function members(string $room): array
    {
        return $this->presence($room)['rooms'][$room]['members'] ?? [];
    }

    /** Publishes a held message as written (relay "host"), or admits a held join (join_hook). */
    public function approve(int $replyToken): void
    {
        Native::check($this->ffi, $this->ffi->chat_approve($this->h(), $replyToken));
    }

    /** Refuses a held message or join; the client is told $reason. */
    public function reject(int $replyToken, string $reason = ''): void
    {
        Native::check($this->ffi, $this->ffi->chat_reject($this->h(), $replyToken, Native::text($reason, 'reason')));
    }

    /** Publishes $text instead of a held message (same sender, same room). */
    public function replace(int $replyToken, string $text): void
    {
        Native::check($this->ffi, $this->ffi->chat_replace($this->h(), $replyToken, Native::text($text, 'text')));
    }

    /**
     * Puts a message kept in the host's database back into a room's history (oldest first, ids
     * increasing), so browsers resume across a daemon restart. Use with a fixed `history_epoch`.
     */
    public function restore(string $room, int $msgId, int $tsMs, string $from, string $text): void
    {
        Native::check($this->ffi, $this->ffi->chat_restore(
            $this->h(),
            Native::text($room, 'room'),
            $msgId,
            $tsMs,
            Native::text($from, 'from'),
            Native::text($text, 'text'),
        ));
    }

    /**
     * Reads the `tls` certificate and key files again after a renewal replaced them, without a
     * restart: new connections get the new certificate, open ones stay up with theirs. On a
     * connect() handle the daemon reloads (a certbot deploy hook can do it from the shell).
     *
     * @throws Exception\ConfigException naming `tls.cert` or `tls.key` when a file cannot be used
     *         (the old certificate keeps serving)
     * @throws Exception\InvalidValueException when the engine runs without `tls`
     */
    public function reloadTls(): void
    {
        Native::check($this->ffi, $this->ffi->chat_reload_tls($this->h()));
    }

    /** Counters and gauges (see chat_stats_json). */
    public function stats(): array
    {
        return $this->json($this->ffi->chat_stats_json($this->h()));
    }

    /** Who is where, with the event sequence number it reflects (see chat_presence_json). */
    public function presence(?string $room = null): array
    {
        return $this->json($this->ffi->chat_presence_json($this->h(), $room === null ? null : Native::text($room, 'room')));
    }

    private function json(?\FFI\CData $s): array
    {
        if ($s === null) {
            throw Native::lastError($this->ffi);
        }
        try {
            return json_decode(\FFI::string($s), true, 512, JSON_THROW_ON_ERROR);
        } finally {
            $this->ffi->chat_string_free($s);
        }
    }

    /** Adds a handler for one kind of event (several may be added). */
    public function on(EventKind $kind, callable $handler): self
    {
        $this->handlers[$kind->value][] = $handler;
        return $this;
    }

    /** Adds a handler for every event. */
    public function onAny(callable $handler): self
    {
        $this->any[] = $handler;
        return $this;
    }

    private function deliver(Event $e): void
    {
        foreach ($this->handlers[$e->kind->value] ?? [] as $h) {
            $h($e, $this);
        }
        foreach ($this->any as $h) {
            $h($e, $this);
        }
    }

    /** @internal Called from the native callback, inside chat_dispatch, on this thread. */
    public function receive(\FFI\CData $ev): void
    {
        if ($this->failure !== null) {
            return;
        }
        try {
            $this->deliver(Event::fromNative($ev));
        } catch (\Throwable $t) {
            $this->failure = $t;
        }
    }

    /**
     * Waits up to $timeoutMs (0: not at all, -1: until an event or stop) and runs the handlers
     * for what is queued. Returns how many events were handled. For event loops that watch
     * eventStream().
     */
    public function dispatch(int $timeoutMs = 0): int
    {
        if (!$this->callbackSet) {
            $this->failure = null;
            // The closure runs only inside chat_dispatch below, on this thread. An exception
            // must not unwind through C, so it is kept and rethrown once dispatch returns.
            // FFI keeps the closure until the process ends, so it holds the engine weakly:
            // dropping the last Engine reference still runs __destruct (stop and free).
            $self = \WeakReference::create($this);
            $cb = static function ($userdata, $ev) use ($self): void {
                $self->get()?->receive($ev);
            };
            Native::check($this->ffi, $this->ffi->chat_set_callback($this->h(), $cb, null));
            $this->callbackSet = true;
        }
        $n = Native::check($this->ffi, $this->ffi->chat_dispatch($this->h(), $timeoutMs));
        if ($this->failure !== null) {
            $t = $this->failure;
            $this->failure = null;
            throw $t;
        }
        return $n;
    }

    /**
     * Runs handlers until $seconds pass (null: until stop() or a signal). With pcntl, SIGINT
     * and SIGTERM end the loop, the events already queued are handled, and the engine stops
     * cleanly (clients get close 1001).
     */
    public function run(?float $seconds = null): void
    {
        $deadline = $seconds === null ? null : microtime(true) + $seconds;
        $this->keepRunning = true;
        $signals = function_exists('pcntl_signal') && !$this->remote;
        $previous = [];
        if ($signals) {
            $async = pcntl_async_signals(true);
            foreach ([SIGINT, SIGTERM] as $sig) {
                $previous[$sig] = pcntl_signal_get_handler($sig);
                pcntl_signal($sig, function (): void {
                    $this->keepRunning = false;
                });
            }
        }
        $signalled = false;
        try {
            while ($this->keepRunning && !$this->isStopped()) {
                $wait = 200;
                if ($deadline !== null) {
                    $left = (int) (($deadline - microtime(true)) * 1000);
                    if ($left <= 0) {
                        break;
                    }
                    $wait = min($wait, $left);
                }
                try {
                    $this->dispatch($wait);
                } catch (StoppedException) {
                    break; // a handler called stop()
                }
            }
            $signalled = !$this->keepRunning;
        } finally {
            if ($signals) {
                foreach ($previous as $sig => $h) {
                    pcntl_signal($sig, $h ?? SIG_DFL);
                }
                pcntl_async_signals($async);
            }
        }
        if ($signalled && !$this->isStopped()) {
            // Stop first (no new message is accepted from then on), then hand the handlers
            // every event queued before the stop: a message clients saw is never lost to the
            // host that stores it.
            $this->stop();
            $this->drain();
        }
    }

    /**
     * After stop(): calls the handlers for every event that was queued before the stop (a
     * message to store, say), then returns. Handlers may no longer act on the engine (their
     * calls throw StoppedException, which is ignored here).
     */
    public function drain(): void
    {
        while (true) {
            try {
                $e = $this->poll(0);
            } catch (StoppedException) {
                return;
            }
            if ($e === null) {
                return;
            }
            try {
                $this->deliver($e);
            } catch (StoppedException) {
            }
        }
    }

    /** Ends run() after the current event (the engine keeps running). */
    public function interrupt(): void
    {
        $this->keepRunning = false;
    }

    /** The next event, waiting up to $timeoutMs (-1: until one comes or the engine stops). */
    public function poll(int $timeoutMs = 0): ?Event
    {
        $out = $this->ffi->new('struct chat_event *');
        $n = Native::check($this->ffi, $this->ffi->chat_poll_event($this->h(), $timeoutMs, \FFI::addr($out)));
        if ($n === 0 || \FFI::isNull($out)) {
            return null;
        }
        try {
            return Event::fromNative($out[0]);
        } finally {
            $this->ffi->chat_event_free($out);
        }
    }

    /**
     * A read-only PHP stream that is readable while events wait, for stream_select(), ReactPHP
     * or Revolt: when it is readable, call poll() or dispatch(). Do not read from it.
     *
     * @return resource
     */
    public function eventStream()
    {
        if ($this->stream === null) {
            $fd = Native::check($this->ffi, $this->ffi->chat_event_fd($this->h()));
            $s = fopen("php://fd/$fd", 'rb');
            if ($s === false) {
                throw new EmbedChatException("cannot open php://fd/$fd");
            }
            stream_set_blocking($s, false);
            $this->stream = $s;
        }
        return $this->stream;
    }

    public function isStopped(): bool
    {
        if ($this->handle === null) {
            return true;
        }
        // chat_port answers 0 once stopped; for a daemon handle it would cost a round trip.
        return !$this->remote && (int) $this->ffi->chat_port($this->handle) === 0;
    }

    /**
     * Stops the engine (clients get close 1001, its threads are joined); for a connect()
     * handle, closes the connection to the daemon. A second call does nothing.
     */
    public function stop(): void
    {
        if ($this->handle === null) {
            return;
        }
        $rc = (int) $this->ffi->chat_stop($this->handle);
        if ($rc < 0 && $rc !== Native::RESULTS['CHAT_ERR_STOPPED']) {
            Native::check($this->ffi, $rc);
        }
        $this->keepRunning = false;
    }

    /** Stops and releases the native handle. */
    public function __destruct()
    {
        if ($this->handle !== null) {
            $this->stop();
            if (is_resource($this->stream)) {
                fclose($this->stream);
            }
            $this->ffi->chat_free($this->handle);
            $this->handle = null;
        }
    }
}
