<?php
declare(strict_types=1);

namespace EmbedChat;

use EmbedChat\Exception\BindException;
use EmbedChat\Exception\ConfigException;
use EmbedChat\Exception\ControlException;
use EmbedChat\Exception\EmbedChatException;
use EmbedChat\Exception\InvalidValueException;
use EmbedChat\Exception\LibraryException;
use EmbedChat\Exception\QueueFullException;
use EmbedChat\Exception\StoppedException;
use EmbedChat\Exception\UnknownConnectionException;
use EmbedChat\Exception\UnknownTokenException;
use EmbedChat\Exception\UnsupportedException;

/**
 * @internal Loads the library once per process and turns native results into exceptions, in
 * this one place.
 */
final class Native
{
    /**
     * The ABI this package speaks (`chat_abi_version()`, CHAT_ABI_VERSION): 2 since `user` was
     * appended to `chat_event`. A library of another ABI is refused at load time, so this
     * package never reads a `chat_event` laid out differently from its embedchat.h.
     */
    public const ABI_VERSION = 2;
    /** The FFI scope preload.php registers, for PHP-FPM with `ffi.enable=preload`. */
    public const SCOPE = 'EMBEDCHAT';

    /** Result codes, as in `enum chat_result` (checked against the header by a test). */
    public const RESULTS = [
        'CHAT_OK' => 0,
        'CHAT_ERR_NULL' => -1,
        'CHAT_ERR_UTF8' => -2,
        'CHAT_ERR_CONFIG' => -3,
        'CHAT_ERR_BIND' => -4,
        'CHAT_ERR_STOPPED' => -5,
        'CHAT_ERR_UNKNOWN_CONN' => -6,
        'CHAT_ERR_QUEUE_FULL' => -7,
        'CHAT_ERR_PANIC' => -8,
        'CHAT_ERR_INTERNAL' => -9,
        'CHAT_ERR_INVALID' => -10,
        'CHAT_ERR_UNKNOWN_TOKEN' => -11,
        'CHAT_ERR_CONTROL' => -12,
        'CHAT_ERR_UNSUPPORTED' => -13,
    ];

    /** @var array<string, \FFI> */
    private static array $loaded = [];

    public static function header(): string
    {
        return dirname(__DIR__) . '/embedchat.h';
    }

    /** The header with the FFI_SCOPE and FFI_LIB lines `FFI::load` and `ffi.preload` read. */
    public static function scopedHeader(string $libraryPath): string
    {
        return sprintf("#define FFI_SCOPE \"%s\"\n#define FFI_LIB \"%s\"\n", self::SCOPE, addcslashes($libraryPath, '"\\'))
            . file_get_contents(self::header());
    }

    /**
     * The library, the first found of:
     *  1. the path given to Engine::start()/connect() (nothing else is tried then);
     *  2. the EMBEDCHAT_LIB environment variable (nothing else is tried when it is set);
     *  3. this repository's target/release, when the package is used from a checkout;
     *  4. the installed library by its soname, `libembedchat.so.N` with N = ABI_VERSION, through
     *     the system's linker path exactly as a C program finds it: LD_LIBRARY_PATH, then the
     *     ldconfig cache (/usr/lib/<multiarch> from the .deb, /usr/local/lib once ldconfig ran
     *     after `scripts/install`). By soname, so a library of another ABI is never picked;
     *  5. the usual prefixes' lib directories by path (an install whose ldconfig has not run).
     * Returns a path (or the bare soname where the loaded file cannot be told).
     */
    public static function findLibrary(?string $explicit = null): string
    {
        if ($explicit !== null) {
            if (is_file($explicit)) {
                return $explicit;
            }
            throw new LibraryException("no library at $explicit (the path given to Engine::start()/connect())");
        }
        $tried = [];
        $env = getenv('EMBEDCHAT_LIB');
        if (is_string($env) && $env !== '') {
            if (is_file($env)) {
                return $env;
            }
            // Configured but wrong: say so rather than quietly load some other library.
            throw new LibraryException("EMBEDCHAT_LIB names no file: $env");
        }
        $build = dirname(__DIR__, 3) . '/target/release/libembedchat.so';
        if (is_file($build)) {
            return $build;
        }
        $tried[] = $build;

        $soname = 'libembedchat.so.' . self::ABI_VERSION;
        try {
            // dlopen() of a name without a slash searches the linker path; a tiny declaration
            // is enough to find out. Held while /proc/self/maps is read: the library is
            // unloaded with the FFI object.
            $probe = \FFI::cdef('unsigned int chat_abi_version(void);', $soname);
            $path = self::loadedPath($soname);
            unset($probe);
            return $path;
        } catch (\Throwable $e) {
            $tried[] = "$soname (the linker path: LD_LIBRARY_PATH, ldconfig; " . $e->getMessage() . ')';
        }

        foreach (['/usr/local/lib', '/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib'] as $dir) {
            foreach (["$dir/$soname", "$dir/libembedchat.so"] as $path) {
                if (is_file($path)) {
                    return $path;
                }
                $tried[] = $path;
            }
        }
        throw new LibraryException(
            'libembedchat not found (tried ' . implode(', ', $tried) . '). Install it '
            . '(scripts/install, or the libembedchat' . self::ABI_VERSION . ' .deb: see "Install" in '
            . 'the embedchat README) or build it with `cargo build --release`, then pass its path '
            . 'to Engine::start()/connect() or set EMBEDCHAT_LIB if it is elsewhere.'
        );
    }

    /**
     * Where the library dlopen() found by `$soname` lives: its soname link next to the file
     * mapped into this process (a path ffi.preload headers and messages can show, and that
     * follows upgrades within the ABI), or the bare soname when /proc/self/maps cannot tell.
     */
    private static function loadedPath(string $soname): string
    {
        $paths = [];
        foreach (@file('/proc/self/maps', FILE_IGNORE_NEW_LINES) ?: [] as $line) {
            $path = strstr($line, '/');
            if ($path !== false && preg_match('/^libembedchat\.so(\.\d+)*$/', basename($path))) {
                $paths[$path] = true;
            }
        }
        if (count($paths) !== 1) {
            return $soname;
        }
        $file = (string) array_key_first($paths);
        return is_file(dirname($file) . "/$soname") ? dirname($file) . "/$soname" : $file;
    }

    /** The loaded library: the preloaded scope if there is one, else FFI::cdef. */
    public static function ffi(?string $libraryPath = null): \FFI
    {
        $key = $libraryPath ?? '';
        if (isset(self::$loaded[$key])) {
            return self::$loaded[$key];
        }
        if (!extension_loaded('ffi')) {
            throw new LibraryException('the PHP FFI extension is not loaded (install/enable ext-ffi)');
        }
        $ffi = null;
        if ($libraryPath === null) {
            try {
                $ffi = \FFI::scope(self::SCOPE);
            } catch (\Throwable) {
                $ffi = null; // not preloaded
            }
        }
        if ($ffi === null) {
            $lib = self::findLibrary($libraryPath);
            try {
                $ffi = \FFI::cdef((string) file_get_contents(self::header()), $lib);
            } catch (\Throwable $e) {
                $hint = ini_get('ffi.enable') === 'preload'
                    ? ' (ffi.enable=preload: in PHP-FPM load it with bindings/php/preload.php, see its README)'
                    : '';
                throw new LibraryException("cannot load $lib: " . $e->getMessage() . $hint, 0, $e);
            }
        }
        $abi = (int) $ffi->chat_abi_version();
        if ($abi !== self::ABI_VERSION) {
            throw new LibraryException(sprintf(
                'libembedchat speaks ABI %d, this package ABI %d: use the package from the same release as the library',
                $abi,
                self::ABI_VERSION
            ));
        }
        return self::$loaded[$key] = $ffi;
    }

    /** Returns a non-negative result; throws the matching exception for an error code. */
    public static function check(\FFI $ffi, int $rc): int
    {
        if ($rc >= 0) {
            return $rc;
        }
        throw self::error($rc, (string) $ffi->chat_last_error());
    }

    public static function error(int $rc, string $message): EmbedChatException
    {
        return match ($rc) {
            self::RESULTS['CHAT_ERR_CONFIG'] => new ConfigException($message, $rc),
            self::RESULTS['CHAT_ERR_BIND'] => new BindException($message, $rc),
            self::RESULTS['CHAT_ERR_STOPPED'] => new StoppedException($message, $rc),
            self::RESULTS['CHAT_ERR_UNKNOWN_CONN'] => new UnknownConnectionException($message, $rc),
            self::RESULTS['CHAT_ERR_QUEUE_FULL'] => new QueueFullException($message, $rc),
            self::RESULTS['CHAT_ERR_NULL'], self::RESULTS['CHAT_ERR_UTF8'], self::RESULTS['CHAT_ERR_INVALID']
                => new InvalidValueException($message, $rc),
            self::RESULTS['CHAT_ERR_UNKNOWN_TOKEN'] => new UnknownTokenException($message, $rc),
            self::RESULTS['CHAT_ERR_CONTROL'] => new ControlException($message, $rc),
            self::RESULTS['CHAT_ERR_UNSUPPORTED'] => new UnsupportedException($message, $rc),
            default => new EmbedChatException($message, $rc),
        };
    }

    /** Why a call that returns NULL (chat_start, chat_connect) failed, as the right exception. */
    public static function lastError(\FFI $ffi): EmbedChatException
    {
        return self::error((int) $ffi->chat_last_result(), (string) $ffi->chat_last_error());
    }

    /**
     * A PHP string for a `const char *`: a NUL byte would silently cut it short in C, so it is
     * refused here (the library itself refuses invalid UTF-8).
     */
    public static function text(string $s, string $what): string
    {
        if (str_contains($s, "\0")) {
            throw new InvalidValueException("$what contains a NUL byte", self::RESULTS['CHAT_ERR_INVALID']);
        }
        return $s;
    }
}
