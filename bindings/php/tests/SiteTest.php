<?php
declare(strict_types=1);

namespace EmbedChat\Tests;

use EmbedChat\Engine;
use EmbedChat\Exception\ControlException;
use EmbedChat\Exception\InvalidValueException;
use EmbedChat\Exception\UnknownConnectionException;
use EmbedChat\Exception\UnsupportedException;
use EmbedChat\Publisher;
use EmbedChat\Token;
use PHPUnit\Framework\TestCase;

/** The site's side: login tokens minted in PHP, the HTTP API, the control socket. */
final class SiteTest extends TestCase
{
    private const SECRET = 'site-secret-0123456789abcdef';
    private const KEY = 'api-key-0123456789abcdef';

    private static function refused(int $port, string $query): string
    {
        try {
            new WsClient($port, $query);
        } catch (\RuntimeException $x) {
            return $x->getMessage();
        }
        self::fail("upgrade with ?$query was accepted");
    }

    public function testTokensMintedInPhpAreAcceptedAndBadOnesRefused(): void
    {
        $e = Engine::start(['listen' => '127.0.0.1:0', 'close_timeout_ms' => 100, 'stop_timeout_ms' => 500, 'auth' => ['secret' => self::SECRET]]);
        $t = Token::issue(self::SECRET, '42', 'Ada Lovelace', ['maths', 'lobby']);
        $c = new WsClient($e->port(), 'token=' . rawurlencode($t));
        $w = $c->recv();
        self::assertSame(['Ada Lovelace', true, 'maths'], [$w['name'], $w['bound'], $w['room']]);
        $connected = $e->poll(2000);
        self::assertSame(['42', 'Ada Lovelace'], [$connected->user, $connected->name], 'events name the site user');

        $forged = Token::issue('another-secret-0123456789', '42', 'Ada');
        self::assertStringContainsString('401', self::refused($e->port(), "token=$forged"));
        $expired = Token::sign(self::SECRET, ['sub' => '42', 'name' => 'Ada', 'exp' => time() - 120]);
        self::assertStringContainsString('401', self::refused($e->port(), "token=$expired"));
        self::assertStringContainsString('403', self::refused($e->port(), "token=$t&room=kitchen"));
        self::assertStringContainsString('401', self::refused($e->port(), 'name=anon'));
        self::assertSame(4, $e->stats()['auth_failures']);

        $second = new WsClient($e->port(), 'token=' . rawurlencode($t));
        $second->recv();
        self::assertSame(['42'], array_column($e->members('maths'), 'user'), 'two tabs, one member');
        self::assertSame(2, $e->kickUser('42', 'signed out'));
        while ($c->recv() !== null) {
        }
        self::assertSame(4000, $c->closeCode);
    }

    public function testTokensCarryTheAudienceAnEngineAsksFor(): void
    {
        $e = Engine::start(['listen' => '127.0.0.1:0', 'close_timeout_ms' => 100, 'stop_timeout_ms' => 500,
            'auth' => ['secret' => self::SECRET, 'audience' => 'chat.example']]);
        $t = Token::issue(self::SECRET, '42', 'Ada', ttl: 60, audience: 'chat.example');
        $c = new WsClient($e->port(), 'token=' . rawurlencode($t));
        self::assertSame('Ada', $c->recv()['name']);
        $other = Token::issue(self::SECRET, '42', 'Ada', ttl: 60, audience: 'billing.example');
        self::assertStringContainsString('401', self::refused($e->port(), "token=$other"));
        $none = Token::issue(self::SECRET, '42', 'Ada', ttl: 60);
        self::assertStringContainsString('401', self::refused($e->port(), "token=$none"));
        self::assertSame(2, $e->stats()['auth_failures']);

        $this->expectException(InvalidValueException::class);
        Token::issue(self::SECRET, '42', 'Ada', audience: '');
    }

    public function testPublisherPostsThroughTheHttpApi(): void
    {
        $e = Engine::start(['listen' => '127.0.0.1:0', 'close_timeout_ms' => 100, 'stop_timeout_ms' => 500, 'api_key' => self::KEY]);
        $c = new WsClient($e->port(), 'name=reader');
        $w = $c->recv();
        $p = new Publisher("http://127.0.0.1:{$e->port()}", self::KEY);
        self::assertSame(1, $p->publish('lobby', 'Doors open at 9', 'Front desk'));
        $m = $c->recvType('message');
        self::assertSame(['Doors open at 9', 'Front desk'], [$m['text'], $m['from']['name']]);
        self::assertEquals([['room' => 'lobby', 'users' => 1, 'connections' => 1, 'last_id' => 1]], $p->rooms());
        self::assertSame('reader', $p->presence('lobby')['rooms']['lobby']['members'][0]['name']);
        self::assertSame(1, $p->stats()['connections_open']);
        $p->send($w['id'], 'only you');
        self::assertSame('only you', $c->recvType('whisper')['text']);
        self::assertSame(1, $p->kick($w['id'], 'closing time'));
        self::assertNull($c->recv());
        self::assertSame(4000, $c->closeCode);

        try {
            (new Publisher("http://127.0.0.1:{$e->port()}", 'wrong-key-0123456789'))->publish('lobby', 'x');
            self::fail('published with a wrong key');
        } catch (ControlException $x) {
            self::assertStringContainsString('401', $x->getMessage());
        }
        self::assertSame(1, $e->stats()['api_auth_failures']);
    }

    public function testConnectActsOnARunningDaemon(): void
    {
        $sock = sys_get_temp_dir() . '/embedchat-phpunit-' . getmypid() . '.sock';
        $daemon = Engine::start(['listen' => '127.0.0.1:0', 'close_timeout_ms' => 100, 'stop_timeout_ms' => 500, 'control_socket' => $sock]);
        self::assertSame('600', substr(sprintf('%o', fileperms($sock)), -3));
        $c = new WsClient($daemon->port(), 'name=reader');
        $w = $c->recv();

        $site = Engine::connect($sock);
        self::assertTrue($site->isRemote());
        self::assertSame($daemon->port(), $site->port());
        self::assertSame(1, $site->broadcast('lobby', 'from a web request'));
        self::assertSame('from a web request', $c->recvType('message')['text']);
        self::assertSame(1, $site->broadcast('lobby', 'Doors open at 9', 'Front desk'));
        self::assertSame('Front desk', $c->recvType('message')['from']['name']);
        $site->send($w['id'], 'psst');
        self::assertSame('psst', $c->recvType('whisper')['text']);
        self::assertSame(1, $site->stats()['connections_open']);
        self::assertEquals([['room' => 'lobby', 'users' => 1, 'connections' => 1, 'last_id' => 2]], $site->rooms());
        self::assertSame('reader', $site->members('lobby')[0]['name']);
        self::assertSame([], $site->members('empty'));
        try {
            $site->kickUser('nobody');
            self::fail('kicked a user who is not here');
        } catch (InvalidValueException $x) {
            self::assertStringContainsString('nobody', $x->getMessage());
        }
        try {
            $site->send(999_999, 'x');
            self::fail('sent');
        } catch (UnknownConnectionException) {
        }
        try {
            $site->poll(0);
            self::fail('polled');
        } catch (UnsupportedException) {
        }
        $named = Engine::connect($sock, daemonUser: '0');
        self::assertSame($daemon->port(), $named->port(), 'naming root changes nothing for a daemon of our own user');
        try {
            Engine::connect($sock, daemonUser: 'no-such-user-embedchat');
            self::fail('connected trusting a user that does not exist');
        } catch (InvalidValueException $x) {
            self::assertStringContainsString('no-such-user-embedchat', $x->getMessage());
        }
        $daemon->stop();
        self::assertFileDoesNotExist($sock);
        $this->expectException(ControlException::class);
        $site->broadcast(null, 'nobody home');
    }
}
