//! The two words a mail-server form and a provider preset share: the server type and how
//! the connection is protected.

crate::coded_enum! {
    /// Whether the form was filled by hand or from a preset.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub enum ServerKind {
        #[default]
        Custom = "CUSTOM",
        Gmail = "GMAIL",
        GoogleWorkspace = "GOOGLE_WORKSPACE",
        Microsoft365 = "MICROSOFT_365",
        OutlookCom = "OUTLOOK_COM",
        YahooJapan = "YAHOO_JAPAN",
        ICloud = "ICLOUD",
        AmazonSes = "AMAZON_SES",
        SendGrid = "SENDGRID",
        Xserver = "XSERVER",
        Sakura = "SAKURA",
        Lolipop = "LOLIPOP",
        ConohaWing = "CONOHA_WING",
        Ocn = "OCN",
        Biglobe = "BIGLOBE",
        SoNet = "SO_NET",
    }
}

crate::coded_enum! {
    /// How the SMTP connection is protected. The seed pages call implicit TLS "ssl" and
    /// STARTTLS "tls".
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Encryption {
        None = "NONE",
        Ssl = "SSL",
        StartTls = "STARTTLS",
    }
}

impl Encryption {
    /// The usual encryption for a port, used when a form leaves encryption out.
    pub fn usual_for_port(port: u16) -> Self {
        match port {
            465 => Encryption::Ssl,
            25 => Encryption::None,
            _ => Encryption::StartTls,
        }
    }
}
