<?php
declare(strict_types=1);

namespace EmbedChat\Tests;

use EmbedChat\Engine;
use EmbedChat\Exception\ConfigException;
use EmbedChat\Exception\ControlException;
use EmbedChat\Exception\InvalidValueException;
use EmbedChat\Publisher;
use PHPUnit\Framework\TestCase;

/**
 * The engine serving https:// and wss:// itself (config `tls`), with a certificate authority
 * the test makes with PHP's openssl extension: the Publisher over https, verifying against
 * that CA, and reloadTls().
 */
final class TlsTest extends TestCase
{
    private const KEY = 'api-key-0123456789abcdef';
    private string $dir;

    protected function setUp(): void
    {
        $this->dir = sys_get_temp_dir() . '/embedchat-php-tls-' . getmypid() . '-' . bin2hex(random_bytes(4));
        mkdir($this->dir, 0700);
        // The extensions a CA and a server certificate need (rustls checks them as browsers do).
        file_put_contents("$this->dir/openssl.cnf", <<<CNF
            [req]
            distinguished_name = dn
            [dn]
            [ca]
            basicConstraints = critical,CA:TRUE
            keyUsage = critical,keyCertSign,cRLSign
            subjectKeyIdentifier = hash
            [leaf]
            basicConstraints = CA:FALSE
            keyUsage = critical,digitalSignature
            extendedKeyUsage = serverAuth
            subjectAltName = IP:127.0.0.1,DNS:localhost
            subjectKeyIdentifier = hash
            authorityKeyIdentifier = keyid
            CNF);
    }

    protected function tearDown(): void
    {
        foreach (glob("$this->dir/*") ?: [] as $f) {
            unlink($f);
        }
        rmdir($this->dir);
    }

    /** @return array{\OpenSSLAsymmetricKey, \OpenSSLCertificate} the CA's key and certificate, also written to ca.pem */
    private function makeCa(): array
    {
        $key = self::ecKey();
        $csr = openssl_csr_new(['commonName' => 'embedchat test CA'], $key, $this->opts('ca'));
        $cert = openssl_csr_sign($csr, null, $key, 2, $this->opts('ca'), random_int(1, PHP_INT_MAX));
        openssl_x509_export_to_file($cert, "$this->dir/ca.pem");
        return [$key, $cert];
    }

    /** A server certificate for 127.0.0.1 signed by the CA, written to cert.pem and key.pem. */
    private function makeLeaf(array $ca): void
    {
        [$caKey, $caCert] = $ca;
        $key = self::ecKey();
        $csr = openssl_csr_new(['commonName' => '127.0.0.1'], $key, $this->opts('leaf'));
        $cert = openssl_csr_sign($csr, $caCert, $caKey, 2, $this->opts('leaf'), random_int(1, PHP_INT_MAX));
        openssl_x509_export($cert, $pem);
        file_put_contents("$this->dir/cert.pem.new", $pem . file_get_contents("$this->dir/ca.pem"));
        rename("$this->dir/cert.pem.new", "$this->dir/cert.pem");
        openssl_pkey_export_to_file($key, "$this->dir/key.pem");
    }

    private function opts(string $section): array
    {
        return ['config' => "$this->dir/openssl.cnf", 'digest_alg' => 'sha256', 'x509_extensions' => $section];
    }

    private static function ecKey(): \OpenSSLAsymmetricKey
    {
        return openssl_pkey_new(['private_key_type' => OPENSSL_KEYTYPE_EC, 'curve_name' => 'prime256v1']);
    }

    private function start(): Engine
    {
        return Engine::start([
            'listen' => '127.0.0.1:0', 'close_timeout_ms' => 100, 'stop_timeout_ms' => 500, 'api_key' => self::KEY,
            'tls' => ['cert' => "$this->dir/cert.pem", 'key' => "$this->dir/key.pem"],
        ]);
    }

    public function testPublisherPostsOverHttpsCheckingTheCertificateAgainstTheGivenCa(): void
    {
        $this->makeLeaf($this->makeCa());
        $e = $this->start();
        $ca = "$this->dir/ca.pem";
        $reader = new WsClient($e->port(), 'name=reader', ssl: ['cafile' => $ca, 'peer_name' => '127.0.0.1']);
        self::assertSame('welcome', $reader->recv()['type']);

        $p = new Publisher("https://127.0.0.1:{$e->port()}", self::KEY, verify: $ca);
        self::assertSame(1, $p->publish('lobby', 'posted over https'));
        do {
            $m = $reader->recv();
        } while ($m !== null && $m['type'] !== 'message');
        self::assertSame('posted over https', $m['text']);
        self::assertSame(1, $p->stats()['connections_open']);

        // The system's CAs do not know this one: refused, and the engine counts the failure.
        try {
            (new Publisher("https://127.0.0.1:{$e->port()}", self::KEY))->publish('lobby', 'never');
            self::fail('an unknown CA was accepted');
        } catch (ControlException $x) {
            self::assertStringContainsString('certificate verify failed', $x->getMessage());
        }
        // Off on purpose (a test, or 127.0.0.1): it goes through.
        $insecure = new Publisher("https://127.0.0.1:{$e->port()}", self::KEY, verify: false);
        self::assertSame(1, $insecure->publish('lobby', 'unchecked'));
        self::assertGreaterThanOrEqual(1, $e->stats()['tls_handshake_failures']);

        $this->expectException(InvalidValueException::class);
        new Publisher("https://127.0.0.1:{$e->port()}", self::KEY, verify: "$this->dir/missing.pem");
    }

    public function testReloadTlsServesARenewedCertificateAndRefusesABrokenOne(): void
    {
        $ca = $this->makeCa();
        $this->makeLeaf($ca);
        $e = $this->start();
        $before = $this->servedCert($e->port());
        $this->makeLeaf($ca);
        $e->reloadTls();
        $after = $this->servedCert($e->port());
        self::assertNotSame($before, $after, 'a new connection gets the new certificate');
        self::assertSame(openssl_x509_fingerprint(file_get_contents("$this->dir/cert.pem")), $after);

        file_put_contents("$this->dir/key.pem", "not a key\n");
        try {
            $e->reloadTls();
            self::fail('a broken key was taken');
        } catch (ConfigException $x) {
            self::assertStringContainsString('`tls.key`', $x->getMessage());
        }
        self::assertSame($after, $this->servedCert($e->port()), 'the last good certificate keeps serving');
    }

    public function testABadCertificateFailsStartNamingTheKey(): void
    {
        file_put_contents("$this->dir/cert.pem", "junk\n");
        file_put_contents("$this->dir/key.pem", "junk\n");
        try {
            $this->start();
            self::fail('started with junk');
        } catch (ConfigException $x) {
            self::assertStringStartsWith('config key `tls.cert`: ', $x->getMessage());
        }
    }

    /** The SHA-1 fingerprint of the certificate the engine shows a new connection. */
    private function servedCert(int $port): string
    {
        $ctx = stream_context_create(['ssl' => ['cafile' => "$this->dir/ca.pem", 'capture_peer_cert' => true]]);
        $s = stream_socket_client("ssl://127.0.0.1:$port", $errno, $err, 5.0, STREAM_CLIENT_CONNECT, $ctx);
        self::assertNotFalse($s, $err);
        $cert = stream_context_get_params($s)['options']['ssl']['peer_certificate'];
        fclose($s);
        return openssl_x509_fingerprint($cert);
    }
}
