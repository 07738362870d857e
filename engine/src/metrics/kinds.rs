//! Request kinds, rejection reasons and failure codes as small indexes,
//! for counting by label without a map on the hot path.

use mercato_protocol as wire;

/// Declares the names of an enum's variants, in order, and a function
/// giving a value's index among them; a variant added to the enum and not
/// here fails to compile.
macro_rules! indexed {
    ($names:ident, $index:ident, $ty:path, [$($v:ident),* $(,)?]) => {
        /// Variant names, in the order of their counters.
        pub const $names: &[&str] = &[$(stringify!($v)),*];

        #[inline]
        pub(crate) fn $index(value: &$ty) -> usize {
            #[allow(non_camel_case_types, clippy::enum_variant_names)]
            enum At { $($v),* }
            use $ty as E;
            match value {
                $(E::$v { .. } => At::$v as usize,)*
            }
        }
    };
}

indexed!(
    REQUEST_KINDS,
    request_index,
    wire::Request,
    [
        PutSku,
        Restock,
        Deposit,
        Withdraw,
        PlaceOrder,
        Pay,
        Cancel,
        Refund,
        GetSku,
        GetAccount,
        GetOrder,
        ListOrders,
        CacheSet,
        CacheGet,
        CacheDel,
        CacheStats,
        Info,
        LockAcquire,
        LockRenew,
        LockRelease,
        LockInspect,
        LockCancel,
        Fenced,
        SagaBegin,
        SagaStep,
        SagaAbort,
        SagaEnd,
        SagaGet,
        SagaList,
        Subscribe,
        FeedAck,
        Unsubscribe,
        SubscriptionList,
        SubscriptionDrop,
    ]
);

indexed!(
    REJECT_REASONS,
    reject_index,
    wire::Reject,
    [
        OutOfStock,
        InsufficientFunds,
        PerUserLimit,
        PriceChanged,
        UnknownSku,
        UnknownAccount,
        UnknownOrder,
        InvalidState,
        TooManyLines,
        EmptyOrder,
        ZeroQuantity,
        DuplicateSku,
        InvalidTtl,
        ZeroAmount,
        BalanceOverflow,
        StockOverflow,
        TotalOverflow,
        IdempotencyConflict,
        InvalidLimit,
        ShardUnavailable,
        InvalidKey,
        ValueTooLarge,
        Lock,
        Saga,
        Feed,
        Forbidden,
    ]
);

/// Codes a request's `Failed` answer carries; anything else counts as
/// `Other`.
pub const FAILURE_CODES: &[&str] = &["Busy", "Shutdown", "Unavailable", "Internal", "Other"];

#[inline]
pub(crate) fn failure_index(code: u16) -> usize {
    use wire::ErrorCode as C;
    match C::from_u16(code) {
        Some(C::Busy) => 0,
        Some(C::Shutdown) => 1,
        Some(C::Unavailable) => 2,
        Some(C::Internal) => 3,
        _ => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_its_own_index() {
        assert_eq!(request_index(&wire::Request::Info), 16);
        assert_eq!(REQUEST_KINDS[16], "Info");
        assert_eq!(
            REQUEST_KINDS[request_index(&wire::Request::SubscriptionList)],
            "SubscriptionList"
        );
        assert_eq!(
            REJECT_REASONS[reject_index(&wire::Reject::ZeroAmount)],
            "ZeroAmount"
        );
        assert_eq!(
            FAILURE_CODES[failure_index(wire::ErrorCode::Busy as u16)],
            "Busy"
        );
        assert_eq!(FAILURE_CODES[failure_index(9_999)], "Other");
    }
}
