<?php
declare(strict_types=1);

namespace EmbedChat\Exception;

/** The daemon's control socket or HTTP API could not be reached, or refused the request. */
final class ControlException extends EmbedChatException
{
}
