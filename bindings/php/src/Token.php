<?php
declare(strict_types=1);

namespace EmbedChat;

use EmbedChat\Exception\InvalidValueException;

/**
 * Login tokens for the chat: HS256 JWTs the engine checks (config `auth.secret`). Pure PHP, no
 * FFI: a PHP-FPM login page mints one and hands it to the browser (the bundled page takes it
 * from `#token=...` and sends it in `Sec-WebSocket-Protocol`; other clients may use `?token=`).
 *
 * Keep the ttl short (60–300 s): the token is only checked when a connection opens, and one
 * that leaks (a screenshot, a shared link, a log) is a login until it expires.
 */
final class Token
{
    /**
     * @param string   $secret the engine's `auth.secret` (at least 16 bytes)
     * @param string   $userId the site's user id (claim `sub`): every tab with it is one user
     * @param string   $name   the display name; users cannot change it in the chat
     * @param string[] $rooms  rooms the user may be in ([] = any); the first is where they land
     * @param int      $ttl    seconds until it expires (claim `exp`); it is checked at connect,
     *                         so a short one (60–300) is enough for a page that mints one per load
     * @param ?string  $audience the engine's `auth.audience` (claim `aud`); null = no `aud`,
     *                         for an engine without `auth.audience` (which refuses any `aud`)
     */
    public static function issue(
        string $secret,
        string $userId,
        string $name,
        array $rooms = [],
        int $ttl = 3600,
        ?string $audience = null,
    ): string {
        if (strlen($secret) < 16) {
            throw new InvalidValueException('the secret must be at least 16 bytes, like the engine\'s auth.secret');
        }
        if ($userId === '' || $ttl <= 0) {
            throw new InvalidValueException('a token needs a user id and a positive ttl');
        }
        $now = time();
        $claims = ['sub' => $userId, 'name' => $name, 'iat' => $now, 'exp' => $now + $ttl];
        if ($rooms !== []) {
            $claims['rooms'] = array_values(array_map('strval', $rooms));
        }
        if ($audience !== null) {
            if ($audience === '') {
                throw new InvalidValueException('an audience must not be empty (null for none)');
            }
            $claims['aud'] = $audience;
        }
        return self::sign($secret, $claims);
    }

    /** Signs any claims (HS256). */
    public static function sign(string $secret, array $claims): string
    {
        $flags = JSON_THROW_ON_ERROR | JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE;
        $head = self::b64(json_encode(['alg' => 'HS256', 'typ' => 'JWT'], $flags));
        $body = self::b64(json_encode($claims, $flags));
        return "$head.$body." . self::b64(hash_hmac('sha256', "$head.$body", $secret, true));
    }

    private static function b64(string $raw): string
    {
        return rtrim(strtr(base64_encode($raw), '+/', '-_'), '=');
    }
}
