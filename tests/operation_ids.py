"""SPEC.md's table of operation ids ("Operations"), copied: a published contract, since generated clients
name their functions after these ids, so a change here is a change of the contract. Rows of operations
that do not exist yet are kept: test_openapi checks every operation that is served."""

OPERATION_IDS = {
    ("GET", "/health"): "health",
    ("POST", "/user/register"): "register_user",
    ("POST", "/user/auth"): "authenticate_user",
    ("POST", "/user/token"): "issue_oauth_token",
    ("POST", "/user/logout"): "logout",
    ("POST", "/user/password"): "change_password",
    ("POST", "/refer/update_code"): "update_code",
    ("PUT", "/refer/update_code"): "update_code_put",
    ("DELETE", "/refer/delete"): "delete_code",
    ("POST", "/refer/delete"): "delete_code_post",
    ("GET", "/refer/getcode"): "getcode",
    ("POST", "/refer/getcode"): "getcode_post",
    ("POST", "/referals/register"): "register_referral",
    ("GET", "/referals/list"): "list_referrals",
    ("POST", "/referals/list"): "list_referrals_post",
    ("GET", "/refer/stats"): "get_stats",
    ("POST", "/integration/referrals/{referral_id}/qualify"): "qualify_referral",
    ("GET", "/integration/referrals"): "list_all_referrals",
    ("POST", "/user/password/forgot"): "forgot_password",
    ("POST", "/user/password/reset"): "reset_password",
    ("POST", "/user/delete"): "delete_account",
    ("GET", "/user/export"): "export_account",
}
