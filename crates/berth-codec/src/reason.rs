//! MQTT 5 reason codes, one enum per packet family so that a value that is not valid for a packet
//! cannot be built (MQTT 5 §2.4 and each packet's Reason Code table). The 3.1/3.1.1 return codes of
//! CONNACK and SUBACK map onto these.

macro_rules! reason_codes {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $code:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant = $code,)+
        }

        impl $name {
            /// Every code this packet family may carry, in ascending order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            pub fn from_u8(code: u8) -> Option<$name> {
                match code {
                    $($code => Some($name::$variant),)+
                    _ => None,
                }
            }

            pub fn code(self) -> u8 {
                self as u8
            }

            /// Codes 0x80 and above report failure.
            pub fn is_error(self) -> bool {
                self.code() >= 0x80
            }
        }
    };
}

reason_codes! {
    /// CONNACK reason codes (MQTT 5 §3.2.2.2).
    ConnectReasonCode {
        Success = 0x00,
        UnspecifiedError = 0x80,
        MalformedPacket = 0x81,
        ProtocolError = 0x82,
        ImplementationSpecificError = 0x83,
        UnsupportedProtocolVersion = 0x84,
        ClientIdentifierNotValid = 0x85,
        BadUserNameOrPassword = 0x86,
        NotAuthorized = 0x87,
        ServerUnavailable = 0x88,
        ServerBusy = 0x89,
        Banned = 0x8A,
        BadAuthenticationMethod = 0x8C,
        TopicNameInvalid = 0x90,
        PacketTooLarge = 0x95,
        QuotaExceeded = 0x97,
        PayloadFormatInvalid = 0x99,
        RetainNotSupported = 0x9A,
        QoSNotSupported = 0x9B,
        UseAnotherServer = 0x9C,
        ServerMoved = 0x9D,
        ConnectionRateExceeded = 0x9F,
    }
}

impl ConnectReasonCode {
    /// The MQTT 3.1/3.1.1 CONNACK return code for this outcome. 3.1.1 has six codes; every other
    /// refusal is reported as the nearest one (a busy or moved server is "unavailable", a ban is
    /// "not authorized", anything the client got wrong in its packet is "unavailable" because
    /// 3.1.1 has no code for it and the connection is closed right after).
    pub fn v3_return_code(self) -> u8 {
        use ConnectReasonCode::*;
        match self {
            Success => 0x00,
            UnsupportedProtocolVersion => 0x01,
            ClientIdentifierNotValid => 0x02,
            BadUserNameOrPassword | BadAuthenticationMethod => 0x04,
            NotAuthorized | Banned => 0x05,
            _ => 0x03,
        }
    }

    /// Reads a 3.1/3.1.1 CONNACK return code (0..=5).
    pub fn from_v3_return_code(code: u8) -> Option<ConnectReasonCode> {
        use ConnectReasonCode::*;
        Some(match code {
            0x00 => Success,
            0x01 => UnsupportedProtocolVersion,
            0x02 => ClientIdentifierNotValid,
            0x03 => ServerUnavailable,
            0x04 => BadUserNameOrPassword,
            0x05 => NotAuthorized,
            _ => return None,
        })
    }

    /// Whether 3.1/3.1.1 has a return code for exactly this outcome.
    pub fn is_v3_representable(self) -> bool {
        Self::from_v3_return_code(self.v3_return_code()) == Some(self)
    }
}

reason_codes! {
    /// PUBACK and PUBREC reason codes (MQTT 5 §3.4.2.1, §3.5.2.1).
    PubAckReasonCode {
        Success = 0x00,
        NoMatchingSubscribers = 0x10,
        UnspecifiedError = 0x80,
        ImplementationSpecificError = 0x83,
        NotAuthorized = 0x87,
        TopicNameInvalid = 0x90,
        PacketIdentifierInUse = 0x91,
        QuotaExceeded = 0x97,
        PayloadFormatInvalid = 0x99,
    }
}

reason_codes! {
    /// PUBREL and PUBCOMP reason codes (MQTT 5 §3.6.2.1, §3.7.2.1).
    PubRelReasonCode {
        Success = 0x00,
        PacketIdentifierNotFound = 0x92,
    }
}

reason_codes! {
    /// SUBACK reason codes (MQTT 5 §3.9.3); 3.1.1 uses the first three and 0x80.
    SubAckReasonCode {
        GrantedQoS0 = 0x00,
        GrantedQoS1 = 0x01,
        GrantedQoS2 = 0x02,
        UnspecifiedError = 0x80,
        ImplementationSpecificError = 0x83,
        NotAuthorized = 0x87,
        TopicFilterInvalid = 0x8F,
        PacketIdentifierInUse = 0x91,
        QuotaExceeded = 0x97,
        SharedSubscriptionsNotSupported = 0x9E,
        SubscriptionIdentifiersNotSupported = 0xA1,
        WildcardSubscriptionsNotSupported = 0xA2,
    }
}

impl SubAckReasonCode {
    pub fn granted(qos: crate::QoS) -> SubAckReasonCode {
        match qos {
            crate::QoS::AtMostOnce => SubAckReasonCode::GrantedQoS0,
            crate::QoS::AtLeastOnce => SubAckReasonCode::GrantedQoS1,
            crate::QoS::ExactlyOnce => SubAckReasonCode::GrantedQoS2,
        }
    }

    /// The 3.1.1 return code: granted QoS, or 0x80 for every failure.
    pub fn v3_return_code(self) -> u8 {
        if self.is_error() { 0x80 } else { self.code() }
    }

    pub fn is_v3_representable(self) -> bool {
        self.v3_return_code() == self.code()
    }
}

reason_codes! {
    /// UNSUBACK reason codes (MQTT 5 §3.11.3); 3.1.1 UNSUBACK has none.
    UnsubAckReasonCode {
        Success = 0x00,
        NoSubscriptionExisted = 0x11,
        UnspecifiedError = 0x80,
        ImplementationSpecificError = 0x83,
        NotAuthorized = 0x87,
        TopicFilterInvalid = 0x8F,
        PacketIdentifierInUse = 0x91,
    }
}

reason_codes! {
    /// DISCONNECT reason codes (MQTT 5 §3.14.2.1).
    DisconnectReasonCode {
        NormalDisconnection = 0x00,
        DisconnectWithWillMessage = 0x04,
        UnspecifiedError = 0x80,
        MalformedPacket = 0x81,
        ProtocolError = 0x82,
        ImplementationSpecificError = 0x83,
        NotAuthorized = 0x87,
        ServerBusy = 0x89,
        ServerShuttingDown = 0x8B,
        KeepAliveTimeout = 0x8D,
        SessionTakenOver = 0x8E,
        TopicFilterInvalid = 0x8F,
        TopicNameInvalid = 0x90,
        ReceiveMaximumExceeded = 0x93,
        TopicAliasInvalid = 0x94,
        PacketTooLarge = 0x95,
        MessageRateTooHigh = 0x96,
        QuotaExceeded = 0x97,
        AdministrativeAction = 0x98,
        PayloadFormatInvalid = 0x99,
        RetainNotSupported = 0x9A,
        QoSNotSupported = 0x9B,
        UseAnotherServer = 0x9C,
        ServerMoved = 0x9D,
        SharedSubscriptionsNotSupported = 0x9E,
        ConnectionRateExceeded = 0x9F,
        MaximumConnectTime = 0xA0,
        SubscriptionIdentifiersNotSupported = 0xA1,
        WildcardSubscriptionsNotSupported = 0xA2,
    }
}

reason_codes! {
    /// AUTH reason codes (MQTT 5 §3.15.2.1).
    AuthReasonCode {
        Success = 0x00,
        ContinueAuthentication = 0x18,
        ReAuthenticate = 0x19,
    }
}
