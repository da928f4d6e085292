"""FIBO's result codes as data: the one table the whole project classifies by.

Source: the provider's document, as ``docs/api.md`` ("Result codes") reads it. Codes 2, 13, 27
transient and 3, 7, 10, 14 permanent are the product owner's; the other classes are this
project's defaults. A code that is not in the table is permanent.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class CodeClass(StrEnum):
    """What a caller must do after a code."""

    SUCCESS = "success"
    #: try the same message again later
    TRANSIENT = "transient"
    #: this message will never succeed as it is: dead-letter it
    PERMANENT = "permanent"
    #: every following message will fail the same way until a person acts
    ACCOUNT = "account"


@dataclass(frozen=True)
class ResultCode:
    code: int
    meaning: str
    meaning_vi: str
    cls: CodeClass


SUCCESS_CODES = frozenset({200, 1})
#: "duplicate content": after an ambiguous attempt it most likely means the first got through
DUPLICATE_CONTENT = 6
INSUFFICIENT_BALANCE = 14
#: the subscriber refuses messages: the number joins the suppression list
SUBSCRIBER_REFUSES = 7

_T, _P, _A = CodeClass.TRANSIENT, CodeClass.PERMANENT, CodeClass.ACCOUNT

_TABLE: tuple[tuple[int, str, str, CodeClass], ...] = (
    (200, "success", "Thành công", CodeClass.SUCCESS),
    (1, "success", "Thành công", CodeClass.SUCCESS),
    (2, "system error", "Lỗi hệ thống", _T),
    (3, "wrong user or password", "Sai user hoặc mật khẩu", _A),
    (4, "IP address not allowed", "IP không được phép", _A),
    (5, "brand name / service not registered", "Chưa khai báo brandname/dịch vụ", _P),
    (6, "duplicate content", "Lặp nội dung", _P),
    (7, "subscriber refuses messages", "Thuê bao từ chối nhận tin", _P),
    (8, "not allowed to send", "Không được phép gửi tin", _P),
    (9, "template not registered", "Chưa khai báo template", _P),
    (10, "wrong phone-number format", "Định dạng thuê bao không đúng", _P),
    (11, "invalid parameter", "Có tham số không hợp lệ", _P),
    (12, "wrong account", "Tài khoản không đúng", _A),
    (13, "sending: connection error", "Gửi tin: lỗi kết nối", _T),
    (14, "insufficient balance", "Tài khoản không đủ", _A),
    (15, "account expired", "Tài khoản hết hạn", _A),
    (16, "service expired", "Hết hạn dịch vụ", _A),
    (17, "test-sending quota used up", "Hết hạn mức gửi test", _A),
    (18, "sending cancelled (customer care)", "Hủy gửi tin (CSKH)", _P),
    (19, "sending cancelled (sales)", "Hủy gửi tin (KD)", _P),
    (20, "gateway does not support Unicode", "Gateway chưa hỗ trợ Unicode", _P),
    (21, "prepaid price not set", "Chưa set giá trả trước", _A),
    (22, "account not activated", "Tài khoản chưa kích hoạt", _A),
    (23, "wrong message syntax", "Sai cú pháp tin nhắn", _P),
    (24, "processing procedure failed", "Thủ tục xử lý bị lỗi", _T),
    (25, "no partner declared for the user", "Chưa khai báo partner cho user", _A),
    (26, "no GateOwner declared for the user", "Chưa khai báo GateOwner cho user", _A),
    (27, "sending: the gate returned an error code", "Gửi tin: gate trả mã lỗi", _T),
    (28, "sending cancelled", "Hủy gửi tin", _P),
    (29, "no TopUpUserId declared for the partner", "Chưa khai báo TopUpUserId cho Partner", _A),
    (30, "refunded to the user", "Hoàn tiền cho User", _P),
    (31, "11-digit number has moved to 10 digits", "Số điện thoại 11 số đã chuyển sang 10 số", _P),
)

CODES: dict[int, ResultCode] = {row[0]: ResultCode(*row) for row in _TABLE}


def lookup(code: int) -> ResultCode:
    """The table's row for ``code``; an unknown code is permanent."""
    found = CODES.get(code)
    if found is not None:
        return found
    return ResultCode(code, f"unknown result code {code}", f"mã không xác định {code}", _P)


def classify(code: int) -> CodeClass:
    return lookup(code).cls
