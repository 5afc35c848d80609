//! The messages of YouTube's `youtube.api.v3.V3DataLiveChatMessageService/StreamList`, written by
//! hand with `prost` derives (field numbers from Google's published `stream_list.proto`), so no
//! `protoc` is needed. Only the fields we read are declared; prost skips the others.

/// `LiveChatMessageSnippet.TypeWrapper.Type`.
pub mod message_type {
    pub const TEXT_MESSAGE_EVENT: i32 = 1;
    pub const TOMBSTONE: i32 = 2;
    pub const CHAT_ENDED_EVENT: i32 = 4;
    pub const NEW_SPONSOR_EVENT: i32 = 7;
    pub const MESSAGE_DELETED_EVENT: i32 = 8;
    pub const MESSAGE_RETRACTED_EVENT: i32 = 9;
    pub const USER_BANNED_EVENT: i32 = 10;
    pub const SUPER_CHAT_EVENT: i32 = 15;
    pub const SUPER_STICKER_EVENT: i32 = 16;
    pub const MEMBER_MILESTONE_CHAT_EVENT: i32 = 17;
    pub const MEMBERSHIP_GIFTING_EVENT: i32 = 18;
}

pub const STREAM_LIST_PATH: &str = "/youtube.api.v3.V3DataLiveChatMessageService/StreamList";

#[derive(Clone, PartialEq, prost::Message)]
pub struct LiveChatMessageListRequest {
    #[prost(string, optional, tag = "1")]
    pub live_chat_id: Option<String>,
    #[prost(string, optional, tag = "2")]
    pub hl: Option<String>,
    #[prost(uint32, optional, tag = "3")]
    pub profile_image_size: Option<u32>,
    #[prost(uint32, optional, tag = "98")]
    pub max_results: Option<u32>,
    #[prost(string, optional, tag = "99")]
    pub page_token: Option<String>,
    #[prost(string, repeated, tag = "100")]
    pub part: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LiveChatMessageListResponse {
    #[prost(string, optional, tag = "2")]
    pub offline_at: Option<String>,
    #[prost(string, optional, tag = "100602")]
    pub next_page_token: Option<String>,
    #[prost(message, repeated, tag = "1007")]
    pub items: Vec<LiveChatMessage>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LiveChatMessage {
    #[prost(string, optional, tag = "101")]
    pub id: Option<String>,
    #[prost(message, optional, tag = "2")]
    pub snippet: Option<LiveChatMessageSnippet>,
    #[prost(message, optional, tag = "3")]
    pub author_details: Option<LiveChatMessageAuthorDetails>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LiveChatMessageAuthorDetails {
    #[prost(string, optional, tag = "10101")]
    pub channel_id: Option<String>,
    #[prost(string, optional, tag = "103")]
    pub display_name: Option<String>,
    #[prost(bool, optional, tag = "4")]
    pub is_verified: Option<bool>,
    #[prost(bool, optional, tag = "5")]
    pub is_chat_owner: Option<bool>,
    #[prost(bool, optional, tag = "6")]
    pub is_chat_sponsor: Option<bool>,
    #[prost(bool, optional, tag = "7")]
    pub is_chat_moderator: Option<bool>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LiveChatMessageSnippet {
    #[prost(int32, optional, tag = "1")]
    pub r#type: Option<i32>,
    #[prost(string, optional, tag = "301")]
    pub author_channel_id: Option<String>,
    #[prost(string, optional, tag = "4")]
    pub published_at: Option<String>,
    #[prost(string, optional, tag = "16")]
    pub display_message: Option<String>,
    #[prost(message, optional, tag = "19")]
    pub text_message_details: Option<TextMessageDetails>,
    #[prost(message, optional, tag = "20")]
    pub message_deleted_details: Option<MessageDeletedDetails>,
    #[prost(message, optional, tag = "21")]
    pub message_retracted_details: Option<MessageRetractedDetails>,
    #[prost(message, optional, tag = "22")]
    pub user_banned_details: Option<UserBannedDetails>,
    #[prost(message, optional, tag = "27")]
    pub super_chat_details: Option<SuperChatDetails>,
    #[prost(message, optional, tag = "28")]
    pub super_sticker_details: Option<SuperStickerDetails>,
    #[prost(message, optional, tag = "29")]
    pub new_sponsor_details: Option<NewSponsorDetails>,
    #[prost(message, optional, tag = "30")]
    pub member_milestone_chat_details: Option<MemberMilestoneChatDetails>,
    #[prost(message, optional, tag = "31")]
    pub membership_gifting_details: Option<MembershipGiftingDetails>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TextMessageDetails {
    #[prost(string, optional, tag = "1")]
    pub message_text: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct MessageDeletedDetails {
    #[prost(string, optional, tag = "101")]
    pub deleted_message_id: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct MessageRetractedDetails {
    #[prost(string, optional, tag = "201")]
    pub retracted_message_id: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct UserBannedDetails {
    #[prost(message, optional, tag = "1")]
    pub banned_user_details: Option<ChannelProfileDetails>,
    #[prost(int32, optional, tag = "2")]
    pub ban_type: Option<i32>,
    #[prost(uint64, optional, tag = "4")]
    pub ban_duration_seconds: Option<u64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ChannelProfileDetails {
    #[prost(string, optional, tag = "101")]
    pub channel_id: Option<String>,
    #[prost(string, optional, tag = "3")]
    pub display_name: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SuperChatDetails {
    #[prost(uint64, optional, tag = "1")]
    pub amount_micros: Option<u64>,
    #[prost(string, optional, tag = "2")]
    pub currency: Option<String>,
    #[prost(string, optional, tag = "3")]
    pub amount_display_string: Option<String>,
    #[prost(string, optional, tag = "4")]
    pub user_comment: Option<String>,
    #[prost(uint32, optional, tag = "5")]
    pub tier: Option<u32>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SuperStickerDetails {
    #[prost(uint64, optional, tag = "1")]
    pub amount_micros: Option<u64>,
    #[prost(string, optional, tag = "2")]
    pub currency: Option<String>,
    #[prost(string, optional, tag = "3")]
    pub amount_display_string: Option<String>,
    #[prost(uint32, optional, tag = "4")]
    pub tier: Option<u32>,
    #[prost(message, optional, tag = "5")]
    pub super_sticker_metadata: Option<SuperStickerMetadata>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SuperStickerMetadata {
    #[prost(string, optional, tag = "1")]
    pub sticker_id: Option<String>,
    #[prost(string, optional, tag = "2")]
    pub alt_text: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct NewSponsorDetails {
    #[prost(string, optional, tag = "1")]
    pub member_level_name: Option<String>,
    #[prost(bool, optional, tag = "2")]
    pub is_upgrade: Option<bool>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct MemberMilestoneChatDetails {
    #[prost(string, optional, tag = "1")]
    pub member_level_name: Option<String>,
    #[prost(uint32, optional, tag = "2")]
    pub member_month: Option<u32>,
    #[prost(string, optional, tag = "3")]
    pub user_comment: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct MembershipGiftingDetails {
    #[prost(int32, optional, tag = "1")]
    pub gift_memberships_count: Option<i32>,
    #[prost(string, optional, tag = "2")]
    pub gift_memberships_level_name: Option<String>,
}
