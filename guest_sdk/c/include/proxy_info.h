/* proxy_info.h - BOINC's PROXY_INFO (lib/proxy_info.h) as APP_INIT_DATA::proxy_info carries it. A
 * plain C struct with BOINC's data members; in the guest it is all zero / empty (the host bridge
 * does not pass the client's proxy settings: a VM reaches the network, if at all, through its own
 * set-up). */
#ifndef BOINC_GUEST_PROXY_INFO_H
#define BOINC_GUEST_PROXY_INFO_H

#ifdef __cplusplus
#define BOINC_GUEST_BOOL bool
#else
#define BOINC_GUEST_BOOL _Bool
#endif

struct PROXY_INFO {
    BOINC_GUEST_BOOL present;
    BOINC_GUEST_BOOL use_http_proxy;
    BOINC_GUEST_BOOL use_socks_proxy;
    BOINC_GUEST_BOOL use_http_auth;
    char http_server_name[256];
    int http_server_port;
    char http_user_name[256];
    char http_user_passwd[256];
    char socks_server_name[256];
    int socks_server_port;
    char socks5_user_name[256];
    char socks5_user_passwd[256];
    BOINC_GUEST_BOOL socks5_remote_dns;
    char noproxy_hosts[256];
    BOINC_GUEST_BOOL autodetect_proxy_settings;
    int autodetect_protocol;
    char autodetect_server_name[256];
    int autodetect_port;
};
#ifndef __cplusplus
typedef struct PROXY_INFO PROXY_INFO;
#endif

#endif /* BOINC_GUEST_PROXY_INFO_H */
