<?php
declare(strict_types=1);

namespace EmbedChat\Exception;

/** The native library could not be found or loaded, or its ABI is not the one this package speaks. */
final class LibraryException extends EmbedChatException
{
}
