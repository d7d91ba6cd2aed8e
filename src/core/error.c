#include "core/core.h"

const char *sl_strerror(int err)
{
    switch (err) {
    case SL_OK:
        return "ok";
    case SL_EINVAL:
        return "invalid input";
    case SL_ENOMEM:
        return "out of memory";
    case SL_EAGAIN:
        return "incomplete input";
    case SL_ETOOBIG:
        return "input too large";
    case SL_ENOTFOUND:
        return "not found";
    case SL_EIO:
        return "input/output error";
    case SL_EUNSUPP:
        return "not supported";
    case SL_ESTATE:
        return "not allowed in this state";
    case SL_EPERM:
        return "not allowed";
    default:
        return "unknown error";
    }
}
