"""vbox_job.xml parser on the real files projects ship, and on hand-made ones."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from host_bridge.jobfile import JobFileError
from host_bridge.jobfile.vbox import PortForward, VboxJob, parse_vbox_job, parse_vbox_job_text
from tests.support.paths import DATA

DATA = DATA
REAL = DATA / "jobs-real"
MINE = DATA / "jobs"


def err_of(text: str) -> JobFileError:
    with pytest.raises(JobFileError) as ei:
        parse_vbox_job_text(text, "vbox_job.xml")
    return ei.value


def test_lhc_cms() -> None:
    j = parse_vbox_job(REAL / "lhcathome_CMS_vbox_job.xml")
    assert j.warnings == ()
    assert j.os_name == "Linux26_64" and j.memory_size_mb == 2048.0
    assert j.job_duration == 64800.0
    assert j.completion_trigger_file == "shutdown"
    assert (j.heartbeat_filename, j.minimum_heartbeat_interval) == ("heartbeat", 1200.0)
    assert j.copy_to_shared == ("init_data.xml",)
    assert (j.pf_host_port, j.pf_guest_port) == (7859, 80)
    assert j.enable_network and j.enable_remotedesktop and j.enable_shared_directory
    assert j.enable_vm_savestate_usage and j.disable_automatic_checkpoints
    assert j.multiattach_vdi_file == "CMS.vdi"
    # defaults of what the file does not say
    assert j.minimum_checkpoint_interval == 600.0 and j.vm_disk_controller_type == "sata"
    assert not j.enable_screenshots_on_error and j.port_forwards == ()


def test_lhc_theory_two_copy_to_shared() -> None:
    j = parse_vbox_job(REAL / "lhcathome_Theory_vbox_job.xml")
    assert j.copy_to_shared == ("init_data.xml", "input")
    assert (j.memory_size_mb, j.job_duration, j.minimum_heartbeat_interval) == (630.0, 864000.0, 1800.0)
    assert j.enable_screenshots_on_error and j.multiattach_vdi_file == "Theory.vdi"


def test_boinc2docker_bools_in_both_forms() -> None:
    j = parse_vbox_job(REAL / "boinc2docker_x86_64_vbox_job.xml")
    assert j.enable_isocontextualization is True  # <tag>1</tag>
    assert j.enable_cache_disk is True
    assert j.enable_shared_directory is True  # <tag/>
    assert j.enable_scratch_directory is True and j.enable_network is True
    assert j.memory_size_mb == 1024.0 and j.completion_trigger_file == "completion_trigger_file"
    assert j.warnings == ()


def test_boinc_sample_worker_shares_slot_and_project() -> None:
    j = parse_vbox_job(REAL / "boinc_samples_vbox_job_worker_1.xml")
    assert j.share_slot_dir and j.share_project_dir and not j.enable_shared_directory
    assert (j.memory_size_mb, j.multiattach_vdi_file) == (512.0, "vm_image_x64_1.vdi")


def test_icrar_misspelt_tag_is_a_warning_naming_the_right_one() -> None:
    j = parse_vbox_job(REAL / "icrar_sourcefinder_vbox_job_1.0.xml")
    assert (j.os_name, j.vm_disk_controller_type, j.vm_disk_controller_model) == (
        "Debian_64",
        "sata",
        "IntelAHCI",
    )
    assert j.minimum_checkpoint_interval == 600.0  # the misspelt tag did not set it
    assert any(
        w.endswith(
            ":7: <vm_minimum_checkpoint_interval>: unknown tag in <vbox_job>, ignored; "
            "did you mean <minimum_checkpoint_interval>?"
        )
        for w in j.warnings
    )
    assert any("256 MB is below vboxwrapper's minimum" in w for w in j.warnings)
    assert j.effective_memory_mb == 512.0


def test_extras() -> None:
    base = parse_vbox_job(REAL / "extra" / "icrar_sourcefinder_base_template_vbox_job.xml")
    assert base.minimum_checkpoint_interval == 1_000_000.0
    thesis = parse_vbox_job(REAL / "extra" / "thesis_vbox_job.xml")
    assert thesis.memory_size_mb == 10000.0 and thesis.multiattach_vdi_file == "hostvm_new_ga.vdi"


def test_unrendered_template_names_the_first_bad_line() -> None:
    with pytest.raises(JobFileError) as ei:
        parse_vbox_job(REAL / "boinc2docker_template_vbox_job.xml")
    e = ei.value
    assert (e.line, e.tag) == (3, "memory_size_mb")
    assert '"{memory}" is not a number' in str(e) and "unrendered template" in str(e)
    # with memory rendered, the stray {extra} on line 10 is the error
    text = (REAL / "boinc2docker_template_vbox_job.xml").read_text().replace("{memory}", "1024")
    e = err_of(text)
    assert e.line == 10 and 'stray text "{extra}"' in str(e) and "unrendered template" in str(e)


def test_malformed_icrar_names_the_line() -> None:
    with pytest.raises(JobFileError) as ei:
        parse_vbox_job(REAL / "icrar_sourcefinder_MALFORMED_vbox_job.xml")
    e = ei.value
    assert e.line == 7
    assert "mismatched closing tag </copy_to_shared>" in str(e) and "<fcopy_to_shared>" in str(e)


def test_port_forward_block_and_lists() -> None:
    j = parse_vbox_job(MINE / "vbox_port_forward.xml")
    assert j.port_forwards == (
        PortForward(8000, 80, True),
        PortForward(8001, 81, True),
        PortForward(8002, 82, True),
    )
    assert j.trickle_trigger_files == ("trickle_a", "trickle_b")
    assert j.intermediate_upload_files == ("partial.tgz",)
    assert j.temporary_exit_trigger_file == "retry_later" and j.boot_iso and j.copy_cmdline_to_shared
    assert j.vram_size_mb == 128.0  # clamped like vboxwrapper
    assert any("512 is outside 16..128; 128 is used" in w for w in j.warnings)


@pytest.mark.parametrize(
    "body,line,tag,needle",
    [
        (
            "<share_slot_dir/>\n<enable_shared_directory/>",
            2,
            "share_slot_dir",
            "together with <enable_shared_directory>",
        ),
        (
            "<share_slot_dir/><enable_shared_directory>0</enable_shared_directory>\n<copy_to_shared>x</copy_to_shared>",
            3,
            "copy_to_shared",
            "can't be used with <share_slot_dir>",
        ),
        ("\n<copy_to_shared>x</copy_to_shared>", 3, "copy_to_shared", "requires <enable_shared_directory/>"),
        (
            "<enable_scratch_directory/>\n<share_project_dir/>",
            3,
            "share_project_dir",
            "<enable_scratch_directory>",
        ),
        (
            "\n<port_forward><guest_port>80</guest_port></port_forward>",
            3,
            "port_forward",
            "has no <host_port>",
        ),
        (
            "\n<port_forward><host_port>80</host_port></port_forward>",
            3,
            "port_forward",
            "has no <guest_port>",
        ),
        ("\n<pf_host_port>70000</pf_host_port>", 3, "pf_host_port", "above the maximum 65535"),
        ("\n<pf_guest_port>8.5</pf_guest_port>", 3, "pf_guest_port", "whole number"),
        ("\n<job_duration>forever</job_duration>", 3, "job_duration", "is not a number"),
        ("\n<enable_network>{net}</enable_network>", 3, "enable_network", "unrendered template"),
        (
            "\n<enable_shared_directory/><copy_to_shared>../../etc/passwd</copy_to_shared>",
            3,
            "copy_to_shared",
            "must be a file name",
        ),
        (
            "\n<heartbeat_filename>/tmp/hb</heartbeat_filename>",
            3,
            "heartbeat_filename",
            "must be a file name",
        ),
    ],
)
def test_rejected(body: str, line: int, tag: str, needle: str) -> None:
    e = err_of(f"<vbox_job>\n{body}\n</vbox_job>")
    assert needle in str(e)
    assert (e.line, e.tag) == (line, tag)


def test_job_xml_given_to_vbox_parser() -> None:
    e = err_of("<job_desc><task><application>a</application></task></job_desc>")
    assert e.tag == "job_desc" and "parse_job_file" in str(e)


def test_defaults_and_warnings() -> None:
    j = parse_vbox_job_text(
        "<vbox_job>\n<completion_trigger_file>done</completion_trigger_file>\n"
        "<minimum_heartbeat_interval>5</minimum_heartbeat_interval>\n"
        "<os_name>A</os_name><os_name>B</os_name>\n</vbox_job>"
    )
    assert j.os_name == "B" and j.memory_size_mb == 0.0 and j.effective_memory_mb == 512.0
    w = "\n".join(j.warnings)
    assert "no <enable_shared_directory/>" in w
    assert "has no effect without <heartbeat_filename>" in w
    assert "given twice (first on line 4)" in w
    assert VboxJob(path="x").vram_size_mb == 16.0


_vboxish = st.one_of(
    st.text(max_size=200),
    st.lists(
        st.sampled_from(
            [
                *'<>/&;=" \nabc0123{}',
                "<vbox_job>",
                "</vbox_job>",
                "<memory_size_mb>",
                "</memory_size_mb>",
                "<copy_to_shared>",
                "</copy_to_shared>",
                "<enable_shared_directory/>",
                "<port_forward>",
                "</port_forward>",
                "<host_port>",
                "</host_port>",
                "<!DOCTYPE",
                "\x00",
            ]
        ),
        max_size=80,
    ).map("".join),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_vboxish)
def test_random_text_only_raises_jobfileerror(text: str) -> None:
    try:
        parse_vbox_job_text(text, "fuzz.xml")
    except JobFileError as e:
        assert str(e).startswith("fuzz.xml")
