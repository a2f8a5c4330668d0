<?php
declare(strict_types=1);

namespace EmbedChat\Exception;

/** No open connection has that id. */
final class UnknownConnectionException extends EmbedChatException
{
}
