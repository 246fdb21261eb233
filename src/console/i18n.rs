//! The console's words in Chinese and English: the browser's `Accept-Language` picks one,
//! a link switches (a cookie remembers). Every string a page shows is here, keyed, so a
//! missing translation is a test failure rather than a page in two languages.

use axum::http::HeaderMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lang {
    Zh,
    En,
}

impl Lang {
    pub(crate) fn code(self) -> &'static str {
        match self {
            Lang::Zh => "zh-CN",
            Lang::En => "en",
        }
    }

    pub(crate) fn parse(code: &str) -> Option<Lang> {
        let c = code.trim().to_ascii_lowercase();
        if c.starts_with("zh") {
            Some(Lang::Zh)
        } else if c.starts_with("en") {
            Some(Lang::En)
        } else {
            None
        }
    }

    /// The cookie's choice, else the first language of `Accept-Language` (by its q-values)
    /// that the console speaks, else Chinese.
    pub(crate) fn of(headers: &HeaderMap, cookie: Option<&str>) -> Lang {
        if let Some(l) = cookie.and_then(Lang::parse) {
            return l;
        }
        let accept = headers
            .get(axum::http::header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mut best: Option<(f32, usize, Lang)> = None;
        for (i, part) in accept.split(',').enumerate() {
            let mut bits = part.split(';');
            let tag = bits.next().unwrap_or("");
            let q = bits
                .find_map(|b| b.trim().strip_prefix("q="))
                .and_then(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            if let Some(l) = Lang::parse(tag)
                && q > 0.0
                && best.is_none_or(|(bq, bi, _)| q > bq || (q == bq && i < bi))
            {
                best = Some((q, i, l));
            }
        }
        best.map(|(_, _, l)| l).unwrap_or(Lang::Zh)
    }

    /// The page's words for `key`; the key itself if it has none (a test checks there is none).
    pub(crate) fn t(self, key: &'static str) -> &'static str {
        match WORDS.iter().find(|(k, _, _)| *k == key) {
            Some((_, en, zh)) => match self {
                Lang::En => en,
                Lang::Zh => zh,
            },
            None => key,
        }
    }
}

/// (key, English, Chinese).
pub(super) const WORDS: &[(&str, &str, &str)] = &[
    ("title", "aftercare console", "aftercare 控制台"),
    ("nav.search", "Search", "查找客户"),
    ("nav.tasks", "Callback tasks", "回访任务"),
    ("nav.campaigns", "Campaigns", "营销活动"),
    ("nav.health", "Health", "运行状况"),
    ("signout", "Sign out", "退出"),
    ("signin", "Sign in", "登录"),
    ("signin.name", "Name", "用户名"),
    (
        "signin.password",
        "Password or API token",
        "密码或 API 令牌",
    ),
    (
        "signin.token_hint",
        "Leave the name empty to sign in with an admin API token.",
        "用户名留空即可用管理员 API 令牌登录。",
    ),
    (
        "signin.wrong",
        "Wrong name or password.",
        "用户名或密码错误。",
    ),
    (
        "signin.slowed",
        "Too many wrong passwords for this name. Try again in (seconds):",
        "此用户名密码错误次数过多，请稍后再试（秒）：",
    ),
    (
        "signin.busy",
        "Many sign-ins are being checked at once. Try again in a few seconds.",
        "同时登录的请求过多，请几秒后再试。",
    ),
    (
        "signin.expired",
        "Your session ended. Please sign in again.",
        "会话已结束，请重新登录。",
    ),
    (
        "search.placeholder",
        "Email, phone, contact id, order id or message id",
        "邮箱、手机号、客户编号、订单号或消息编号",
    ),
    ("search.go", "Find", "查找"),
    (
        "search.none",
        "No customer matches.",
        "没有找到匹配的客户。",
    ),
    ("search.matched", "matched by", "匹配方式"),
    (
        "search.hint",
        "Any phone format works: +86 138 0013 8000, 13800138000, 0086-138-0013-8000.",
        "手机号任意格式均可：+86 138 0013 8000、13800138000、0086-138-0013-8000。",
    ),
    ("match.contact", "contact id", "客户编号"),
    ("match.email", "email", "邮箱"),
    ("match.phone", "phone", "手机号"),
    ("match.order", "order id", "订单号"),
    ("match.message", "message id", "消息编号"),
    ("customer", "Customer", "客户"),
    ("customer.id", "Contact id", "客户编号"),
    ("customer.name", "Name", "姓名"),
    ("customer.email", "Email", "邮箱"),
    ("customer.phone", "Phone", "手机号"),
    ("customer.locale", "Language", "语言"),
    ("customer.zone", "Time zone", "时区"),
    ("customer.local_now", "their time now", "客户当地现在"),
    ("customer.consent", "Consent", "营销许可"),
    (
        "customer.suppressions",
        "Suppressed addresses",
        "屏蔽的地址",
    ),
    (
        "customer.erased_entry",
        "kept as a one-way hash by an erasure",
        "删除个人数据时以单向哈希保留",
    ),
    (
        "customer.not_suppressed",
        "No address is suppressed.",
        "没有被屏蔽的地址。",
    ),
    (
        "customer.timeline",
        "Timeline, newest first",
        "时间线（最新在前）",
    ),
    (
        "customer.truncated",
        "Only the newest items are shown.",
        "只显示最新的条目。",
    ),
    ("consent.yes", "yes", "同意"),
    ("consent.no", "no", "拒绝"),
    ("consent.unset", "not given", "未表示"),
    ("since", "since", "自"),
    ("reason", "reason", "原因"),
    ("suppress", "Suppress", "屏蔽"),
    ("unsuppress", "Lift suppression", "解除屏蔽"),
    ("suppress.reason", "Reason", "原因"),
    ("kind.event", "Event", "事件"),
    ("kind.message", "Message", "消息"),
    ("kind.reply", "SMS reply", "短信回复"),
    ("kind.action", "Agent", "客服操作"),
    ("kind.suppression", "Suppressed", "屏蔽"),
    ("kind.answer", "Survey answer", "问卷回答"),
    ("job", "Job", "活动"),
    ("step", "step", "步骤"),
    ("channel", "Channel", "渠道"),
    ("state", "State", "状态"),
    ("attempt", "attempt", "尝试"),
    ("receipt", "receipt", "回执"),
    ("order", "order", "订单"),
    ("due", "due", "计划"),
    ("open_message", "What they got", "查看内容"),
    ("message", "Message", "消息"),
    ("message.content", "What the customer got", "客户收到的内容"),
    ("message.subject", "Subject", "主题"),
    (
        "message.no_content",
        "No content is stored for this message (not sent yet, a callback task, or removed after retention.content).",
        "没有保存这条消息的内容（尚未发送、回访任务，或已按 retention.content 清除）。",
    ),
    ("message.attempts", "Attempts", "发送尝试"),
    ("message.none", "No such message.", "没有这条消息。"),
    ("retry", "Retry now", "立即重发"),
    ("cancel", "Cancel", "取消发送"),
    (
        "done.retry",
        "Retry requested: it goes with the next dispatch pass.",
        "已请求重发：将在下一轮发送。",
    ),
    ("done.cancel", "Cancelled.", "已取消。"),
    ("done.suppress", "Suppressed.", "已屏蔽。"),
    ("done.unsuppress", "Suppression lifted.", "已解除屏蔽。"),
    ("done.claim", "The task is yours.", "任务已认领。"),
    ("done.done", "Task closed.", "任务已完成。"),
    (
        "refused.state",
        "That cannot be done in this state:",
        "当前状态下不能这样操作：",
    ),
    (
        "refused.role",
        "Your role does not allow this.",
        "您的角色没有这个权限。",
    ),
    (
        "refused.csrf",
        "This form has expired or did not come from the console. Reload the page and try again.",
        "表单已过期或并非来自控制台，请刷新页面后重试。",
    ),
    ("not_found", "Not found.", "未找到。"),
    (
        "store_error",
        "The store did not answer; try again.",
        "存储没有响应，请重试。",
    ),
    ("customer.none", "No such customer.", "没有这个客户。"),
    (
        "customer.link_gone",
        "This link is no longer valid (it lasts while the service runs): search for the customer again.",
        "此链接已失效（仅在服务运行期间有效）：请重新搜索该客户。",
    ),
    ("tasks.open", "Open", "待处理"),
    ("tasks.overdue", "Overdue", "已逾期"),
    ("tasks.done", "Done", "已完成"),
    ("tasks.none", "No tasks here.", "这里没有任务。"),
    (
        "tasks.newest",
        "The newest 500 are shown; older ones are in `aftercare callbacks --all`.",
        "仅显示最近的 500 条；更早的请用 `aftercare callbacks --all` 查看。",
    ),
    ("tasks.claim", "I'm calling", "我来回访"),
    ("tasks.claimed_by", "claimed by", "认领人"),
    ("tasks.note", "Note", "备注"),
    ("tasks.mark_done", "Done", "完成"),
    (
        "campaigns.validate",
        "Jobs and templates check",
        "活动与模板检查",
    ),
    ("campaigns.valid", "No problems.", "没有问题。"),
    ("campaigns.funnel", "Last 30 days", "最近 30 天"),
    ("campaigns.nps", "NPS over time", "NPS 趋势"),
    (
        "campaigns.nps_none",
        "No survey answers are stored yet: the store keeps answers once the survey answer page is in use. Scores will show here by week.",
        "还没有保存问卷回答：问卷回答功能启用后会在此按周显示分数。",
    ),
    (
        "campaigns.nps_events",
        "From survey.answered events in the store.",
        "来自存储中的 survey.answered 事件。",
    ),
    ("campaigns.forecast", "Next 7 days", "未来 7 天预测"),
    (
        "campaigns.forecast_none",
        "Nothing would be sent.",
        "不会发送任何消息。",
    ),
    (
        "campaigns.forecast_error",
        "The forecast could not be computed:",
        "无法计算预测：",
    ),
    (
        "campaigns.preview",
        "Preview with a sample event",
        "示例事件预览",
    ),
    ("campaigns.trigger", "Trigger", "触发"),
    ("campaigns.disabled", "disabled", "已停用"),
    ("funnel.planned", "planned", "计划"),
    ("funnel.sent", "sent", "已发送"),
    ("funnel.delivered", "delivered", "已送达"),
    ("funnel.converted", "converted", "已转化"),
    ("funnel.failed", "failed", "失败"),
    ("funnel.pending", "waiting", "等待中"),
    ("funnel.cancelled", "cancelled", "已取消"),
    ("trigger.after", "after", "之后"),
    ("trigger.reminder", "reminder after", "提醒间隔"),
    ("trigger.stop", "stops on", "停止条件"),
    ("trigger.anniversary", "every year on", "每年于"),
    ("trigger.at", "at", "时间"),
    ("trigger.cron", "on schedule", "定时"),
    ("trigger.next", "next", "下次"),
    ("health.outbox", "Outbox", "发件箱"),
    ("health.depth", "waiting", "等待中"),
    ("health.due", "due now", "现在到期"),
    ("health.oldest", "oldest due for", "最早到期已等待"),
    (
        "health.per_minute",
        "sent per minute (last hour)",
        "每分钟发送（最近一小时）",
    ),
    (
        "health.failures",
        "Failure reasons (last hour)",
        "失败原因（最近一小时）",
    ),
    ("health.no_failures", "No failures.", "没有失败。"),
    ("health.gateways", "SMS gateways", "短信网关"),
    (
        "health.no_gateways",
        "No SMS gateway is configured.",
        "没有配置短信网关。",
    ),
    ("health.up", "up", "正常"),
    ("health.down_for", "skipped for", "暂停"),
    ("health.failures_row", "failures in a row", "连续失败"),
    ("health.jobs", "Job set", "活动集"),
    ("health.version", "version", "版本"),
    ("health.loaded", "loaded", "加载于"),
    ("health.reload", "last reload", "上次重新加载"),
    ("health.no_reload", "none since start", "启动后未重新加载"),
    ("health.relay", "SMTP relay", "SMTP 中继"),
    ("lang.switch", "中文", "English"),
    ("viewer_zone", "times in", "时间为"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn accept_language_picks_by_quality() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(
                axum::http::header::ACCEPT_LANGUAGE,
                HeaderValue::from_str(v).unwrap(),
            );
            m
        };
        assert_eq!(Lang::of(&h("en-US,en;q=0.9"), None), Lang::En);
        assert_eq!(Lang::of(&h("zh-CN,zh;q=0.9,en;q=0.8"), None), Lang::Zh);
        assert_eq!(Lang::of(&h("fr-FR, en;q=0.5, zh;q=0.7"), None), Lang::Zh);
        assert_eq!(Lang::of(&h("de"), None), Lang::Zh);
        assert_eq!(Lang::of(&h("zh-CN"), Some("en")), Lang::En);
        assert_eq!(Lang::of(&HeaderMap::new(), None), Lang::Zh);
    }

    #[test]
    fn every_key_is_once_and_every_page_key_is_translated() {
        let mut keys: Vec<&str> = WORDS.iter().map(|w| w.0).collect();
        keys.sort_unstable();
        let n = keys.len();
        keys.dedup();
        assert_eq!(keys.len(), n, "a key is listed twice");
        // Every `t("...")` in the console's source names a key of this table.
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/console");
        let mut missing = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            for (i, _) in text.match_indices(".t(\"") {
                let rest = &text[i + 4..];
                let key = &rest[..rest.find('"').unwrap()];
                if !keys.contains(&key) {
                    missing.push(format!("{}: {key}", p.display()));
                }
            }
        }
        assert!(missing.is_empty(), "{missing:#?}");
    }
}
